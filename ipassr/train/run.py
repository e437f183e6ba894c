"""A training run's folder, log and checkpoints.

A run lives in one directory::

    RUN/config.toml                  the resolved TrainConfig (ipassr train --config RUN/config.toml)
    RUN/checkpoints/last.pt          latest checkpoint (model, optimizer, scheduler, RNG, counters, config)
    RUN/checkpoints/step-XXXXXXXX.pt the last ``keep_checkpoints`` checkpoints (hard links when possible)
    RUN/weights/last.safetensors     latest weights for ``ipassr infer``
    RUN/weights/best.safetensors     best weights (validation Left PSNR; else lowest epoch loss)
    RUN/log.jsonl                    one JSON record per logged step, validation and run event
    RUN/tensorboard/                 the same scalars, when the tensorboard package is installed

Checkpoints hold only tensors and plain Python values (``torch.load(weights_only=True)`` reads
them) and are written atomically: an interrupted or failed write leaves the previous one intact.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from ..errors import CheckpointError, IpassrError
from ..data.io import PathLike, atomic_path

CHECKPOINT_FORMAT = "ipassr-training-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class RunPaths:
    """The files of one training run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def weights(self) -> Path:
        return self.root / "weights"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_checkpoint(path: PathLike) -> dict[str, Any]:
    """Load a training checkpoint (weights only) and check it is one; CheckpointError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors, truncated zip, ...
        raise CheckpointError(f"{path}: not a readable training checkpoint ({exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an ipassr training checkpoint")
    return payload


def is_out_of_space(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) \
        or "no space left" in text or "disk quota" in text


def write_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """torch.save atomically; a failed write (e.g. disk full) raises IpassrError, old file intact."""
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except (OSError, RuntimeError) as exc:
        why = "disk full" if is_out_of_space(exc) else f"{exc.__class__.__name__}: {exc}"
        previous = " the previous checkpoint is intact" if path.exists() else ""
        raise IpassrError(f"{path}: could not write the checkpoint ({why});{previous}") from exc


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``target`` to ``source`` (no extra disk space), falling back to an atomic copy."""
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        import shutil

        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def keep_numbered_copies(paths: RunPaths, global_step: int, keep: int) -> None:
    """Link last.pt as ``step-XXXXXXXX.pt`` and drop all but the ``keep`` newest such copies."""
    if keep == 0:
        return
    link_or_copy(paths.last_checkpoint, paths.checkpoints / f"step-{global_step:08d}.pt")
    numbered = sorted(paths.checkpoints.glob("step-*.pt"))
    for old in numbered[:-keep]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()


class RunLog:
    """Append-only JSONL log (one complete line per write, flushed) plus optional TensorBoard."""

    def __init__(self, path: Path, tensorboard_dir: Path | None, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        self.writer = None
        self._writer_class = None
        self._tensorboard_dir = tensorboard_dir
        if enabled and tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                SummaryWriter = None  # the optional extra is not installed: JSONL only
                warnings.warn("TensorBoard logging is on but the tensorboard package is not "
                              "installed (pip install tensorboard); logging to log.jsonl only "
                              "(--no-tensorboard turns this warning off)", stacklevel=2)
            self._writer_class = SummaryWriter

    def _tensorboard(self):
        """The SummaryWriter, opened on first use (and again after ``close``), or None."""
        if self.writer is None and self._writer_class is not None:
            self.writer = self._writer_class(str(self._tensorboard_dir))
        return self.writer

    def truncate_after(self, global_step: int) -> None:
        """Drop records from beyond ``global_step`` (a resumed run repeats those steps)."""
        if not (self.enabled and self.path.is_file()):
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            if record.get("global_step", 0) <= global_step:
                kept.append(line)
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
        writer = self._tensorboard()
        if writer is not None:
            step = record.get("global_step", 0)
            for group in ("loss", "val", "correspondence"):
                for key, value in _flatten(record.get(group, {}), group).items():
                    writer.add_scalar(key, value, step)
            for key in ("lr", "samples_per_s"):
                if key in record:
                    writer.add_scalar(f"train/{key}", record[key], step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, done: int) -> Iterator[Any]:
    """A tqdm bar on stderr of ``total`` steps, ``done`` of them done (None when not enabled)."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, initial=done, unit="step", dynamic_ncols=True, file=sys.stderr)
    try:
        yield bar
    finally:
        bar.close()


def _flatten(values: dict[str, Any], prefix: str) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}/{key}"))
        elif isinstance(value, (int, float)):
            out[f"{prefix}/{key}"] = float(value)
    return out


__all__ = ["RunPaths", "RunLog", "read_checkpoint", "write_checkpoint", "CHECKPOINT_FORMAT",
           "CHECKPOINT_VERSION", "is_out_of_space", "link_or_copy", "rng_state", "set_rng_state",
           "progress_bar", "keep_numbered_copies"]
