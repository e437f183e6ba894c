"""Choosing the torch device from what a user typed, with one clear error when it cannot be used.

Torch is imported when a device is parsed, not before: the CLI's parser lists the precisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import IpassrError

if TYPE_CHECKING:
    import torch

__all__ = ["parse_device", "PRECISION_NAMES"]

PRECISION_NAMES = ("float32", "bfloat16", "float16")  # the network precisions ipassr runs in


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
