"""Choosing the torch device from what a user typed, with one clear error when it cannot be used,
and where this process stands under torchrun.

Torch is imported when a device is parsed, not before: the CLI's parser lists the precisions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import IpassrError

if TYPE_CHECKING:
    import torch

__all__ = ["parse_device", "PRECISION_NAMES", "DistEnv", "env_from_environment"]

PRECISION_NAMES = ("float32", "bfloat16", "float16")  # the network precisions ipassr runs in


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in the job: rank, number of processes, GPU index on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs, reports and the progress bar."""
        return self.rank == 0


def env_from_environment() -> DistEnv:
    """The torchrun variables of this process, RANK, WORLD_SIZE and LOCAL_RANK (a single process
    when they are absent); IpassrError when they do not make sense."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    try:
        env = DistEnv(*(int(os.environ.get(name, default)) for name, default in
                        zip(names, (0, 1, 0))))
    except ValueError as exc:
        raise IpassrError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from exc
    if env.world_size < 1 or not 0 <= env.rank < env.world_size or env.local_rank < 0:
        raise IpassrError(f"RANK={env.rank} / WORLD_SIZE={env.world_size} / LOCAL_RANK="
                          f"{env.local_rank}: not a valid torchrun process")
    return env


def parse_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto' (a GPU when there is one) -> a usable torch device.

    Plain 'cuda' means this process's GPU (``local_rank`` under torchrun). IpassrError for an
    unknown name, a PyTorch without CUDA, no GPU, or a GPU index that does not exist.
    """
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise IpassrError(f"--device {name}: unknown device (use cpu, cuda, cuda:N or auto)"
                          ) from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise IpassrError(f"--device {name}: only cpu and cuda devices are supported")
    if not torch.backends.cuda.is_built():
        raise IpassrError(f"--device {name}: this PyTorch ({torch.__version__}) was built without "
                          "CUDA; install a CUDA build of torch, or use --device cpu")
    count = torch.cuda.device_count()
    if count == 0:
        raise IpassrError(f"--device {name}: no CUDA GPU is available (use --device cpu)")
    index = local_rank if device.index is None else device.index
    if index >= count:
        raise IpassrError(f"--device {name}: GPU {index} does not exist "
                          f"({count} GPU{'' if count == 1 else 's'} available)")
    return torch.device("cuda", index)
