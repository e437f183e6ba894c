"""Training iPASSR: the paper's recipe, resumable, observable, and distributed with torchrun.

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
import math
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from .checkpoint import load_into, read_state_dict, save_weights, transfer_into
from .devices import parse_device
from .distributed import (DistEnv, agree, barrier, convert_batchnorm, init_distributed)
from .errors import CheckpointError, IpassrError
from .io import PathLike, atomic_path
from .losses import LossConfig, ipassr_loss
from .model import ARCHITECTURE, IPASSR
from .train_config import (TrainConfig, architecture_differences, config_from_dict, save_config)
from .train_data import (Augmentation, EpochBatches, PatchDataset, PatchSource, epoch_plan,
                         make_loader, open_patches, patch_shape, to_inputs)

CHECKPOINT_FORMAT = "ipassr-training-checkpoint"
CHECKPOINT_VERSION = 1
LOSS_KEYS = ("total", "sr", "photo", "smooth", "cycle", "cons")


class TrainingDiverged(IpassrError):
    """The loss became NaN or infinite; the last good checkpoint was left untouched."""


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


@dataclass
class FitResult:
    """How ``Trainer.fit`` ended: 'finished', 'budget' (max steps / time limit) or 'interrupted'."""

    status: str
    epoch: int
    global_step: int
    signal: int | None = None


# ----------------------------------------------------------------------------- the training step

def compute_losses(network: nn.Module, inputs: tuple[torch.Tensor, ...], scale: int,
                   loss_config: LossConfig, amp: bool = False) -> dict[str, torch.Tensor]:
    """Forward pass of a training batch and every enabled loss term (fp32), key ``total`` included.

    ``inputs`` = (lr_left, lr_right, hr_left, hr_right) float (B, 3, h, w) / (B, 3, sh, sw). With
    ``amp`` the network runs under bf16 autocast (softmax stays fp32 there); the losses are always
    computed in fp32 from fp32 copies of the outputs.
    """
    lr_left, lr_right, hr_left, hr_right = inputs
    device_type = lr_left.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        sr_left, sr_right, maps = network(lr_left, lr_right, return_attention=True)
    if amp:
        sr_left, sr_right = sr_left.float(), sr_right.float()
        if maps is not None:
            maps = type(maps)(*(m.float() for m in maps))
    return ipassr_loss(sr_left, sr_right, hr_left, hr_right, lr_left, lr_right, maps, scale,
                       loss_config)


def resolve_device(name: str, env: DistEnv) -> torch.device:
    """'auto' -> this process's GPU when there is one, else the CPU (``devices.parse_device``)."""
    return parse_device(name, env.local_rank)


def learning_rate(config: TrainConfig, global_step: int, epoch: int, steps_per_epoch: int
                  ) -> float | None:
    """The learning rate of the step after ``global_step`` steps, or None for the paper's plain
    StepLR (which the scheduler applies once per epoch).

    cosine: ``lr`` until step ``lr_decay_from``, then a half cosine down to ``lr_min`` at step
    ``lr_total_steps`` (default: the last step of the last epoch), ``lr_min`` after; step:
    ``lr * lr_gamma ** (epoch // lr_step_epochs)``. A warm-up scales either linearly from
    1/warmup_steps up to 1 over the first ``warmup_steps`` steps.
    """
    if config.lr_schedule == "step" and config.warmup_steps == 0:
        return None
    if config.lr_schedule == "cosine":
        total = config.lr_total_steps or config.epochs * steps_per_epoch
        start = min(config.lr_decay_from, total - 1)
        progress = min(max(global_step - start, 0), total - start) / max(total - start, 1)
        lr = config.lr_min + (config.lr - config.lr_min) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        lr = config.lr * config.lr_gamma ** (epoch // config.lr_step_epochs)
    if global_step < config.warmup_steps:
        lr *= (global_step + 1) / config.warmup_steps
    return lr


# ----------------------------------------------------------------------------- validation adapter

def validate(network: IPASSR, root: PathLike, scale: int, device: torch.device,
             max_scenes: int | None = None) -> dict[str, dict[str, float]]:
    """Mean Left / (Left+Right)/2 PSNR and SSIM per dataset, exactly as ``ipassr evaluate``.

    ``root`` is a community-layout test root (ROOT/<Dataset>/hr, lr_x<s>). Each pair runs alone in
    eval mode (BatchNorm with the image's own statistics) through ``StereoSR``; outputs are clamped
    and quantised to 8 bits before scoring. The network is put back in training mode afterwards.
    """
    from .evaluation import Method, evaluate, find_datasets
    from .inference import StereoSR

    class TrainingNetwork(Method):
        label = "training"

        def __init__(self) -> None:
            self.model = StereoSR(network, device)

        def super_resolve(self, dataset, scene, lr_left, lr_right):
            return self.model.super_resolve(lr_left, lr_right)

    was_training = network.training
    try:
        datasets = [(name, scenes[:max_scenes]) for name, scenes in find_datasets(root, scale)]
        report = evaluate(datasets, [TrainingNetwork()], scale)
    finally:
        network.train(was_training)
    results = {}
    for name, scenes in datasets:
        results[name] = report.dataset_mean("training", name)
        results[name]["scenes"] = len(scenes)
    return results


def validate_correspondence(network: IPASSR, device: torch.device) -> dict[str, float]:
    """(L+R)/2 correspondence scores of biPAM on scikit-image's Motorcycle pair
    (``ipassr.correspondence``), in eval mode; the network is put back in its mode afterwards."""
    from .correspondence import motorcycle_correspondence, summary_row
    from .inference import StereoSR

    was_training = network.training
    try:
        return summary_row(motorcycle_correspondence(StereoSR(network, device)))
    finally:
        network.train(was_training)


# ----------------------------------------------------------------------------- checkpoints

def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
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
    if payload.get("architecture") != ARCHITECTURE:
        raise CheckpointError(f"{path}: checkpoint of architecture {payload.get('architecture')!r}, "
                              f"this ipassr trains {ARCHITECTURE!r}")
    return payload


def _is_out_of_space(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) \
        or "no space left" in text or "disk quota" in text


def write_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """torch.save atomically; a failed write (e.g. disk full) raises IpassrError, old file intact."""
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except (OSError, RuntimeError) as exc:
        why = "disk full" if _is_out_of_space(exc) else f"{exc.__class__.__name__}: {exc}"
        previous = " the previous checkpoint is intact" if path.exists() else ""
        raise IpassrError(f"{path}: could not write the checkpoint ({why});{previous}") from exc


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``target`` to ``source`` (no extra disk space), falling back to an atomic copy."""
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        import shutil

        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


# ----------------------------------------------------------------------------- logging

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


def _flatten(values: dict[str, Any], prefix: str) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}/{key}"))
        elif isinstance(value, (int, float)):
            out[f"{prefix}/{key}"] = float(value)
    return out


# ----------------------------------------------------------------------------- the trainer

class Trainer:
    """One training run: build or resume it with the constructor, run it with ``fit``.

    ``source`` replaces the config's patch file (e.g. ``ArrayPatches`` in tests); ``resume``
    continues ``run_dir``'s last checkpoint, with ``config`` values taken as overrides of the saved
    ones (only the keys in ``overrides`` when given).
    """

    def __init__(self, config: TrainConfig, run_dir: PathLike, *, source: PatchSource | None = None,
                 resume: bool = False, overrides: set[str] | None = None,
                 init_weights: PathLike | None = None, progress: bool = True) -> None:
        self.paths = RunPaths(Path(run_dir))
        self.progress = progress
        self.resumed_changes: list[str] = []
        if resume and init_weights is not None:
            raise IpassrError("--init-weights starts a new run; it cannot be combined with --resume")
        checkpoint = self._load_resume_state(config, overrides) if resume else None
        if checkpoint is None:
            self._refuse_existing_run()
        config = self.config if checkpoint is not None else config
        if checkpoint is None and init_weights is None:
            init_weights = config.init_weights
        self.init_weights: str | None = None
        self.env = init_distributed(use_cuda=resolve_device(config.device, DistEnv()).type == "cuda")
        self.device = resolve_device(config.device, self.env)
        self.source = source if source is not None else self._open_source(config)
        self.config = self._absolute_paths(self._resolve_scale(config, self.source))
        self._check_data(self.config, self.source)
        self._configure_backends()
        self.network = self._build_network(init_weights)
        self.optimizer = torch.optim.Adam(
            self.network.parameters(), lr=self.config.lr,
            betas=(self.config.adam_beta1, self.config.adam_beta2), eps=self.config.adam_eps)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=self.config.lr_step_epochs, gamma=self.config.lr_gamma)
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.best: dict[str, Any] = {}
        if checkpoint is not None:
            self._restore(checkpoint)
        self.model = self._wrap(self.network)
        self.dataset = PatchDataset(self.source, self.config.lr_crop, self.config.replicate_left)
        self.steps_per_epoch = len(self.source) // self.config.batch_size
        self.log = RunLog(self.paths.log, self.paths.tensorboard if self.config.tensorboard else None,
                          enabled=self.env.is_main)
        if self.env.is_main:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.paths.config)
            if checkpoint is not None:
                self.log.truncate_after(self.global_step)
        self._stop_signal: int | None = None
        self._epoch_loss_sum = 0.0
        self._epoch_loss_count = 0

    # --- setup helpers

    def _refuse_existing_run(self) -> None:
        if self.paths.last_checkpoint.exists():
            raise IpassrError(f"{self.paths.root}: already holds a training run; pass --resume to "
                              "continue it, or choose another --out")

    def _load_resume_state(self, requested: TrainConfig, overrides: set[str] | None
                           ) -> dict[str, Any]:
        """Read the run's last checkpoint; the saved config with the requested overrides applied."""
        path = self.paths.last_checkpoint
        if not path.is_file():
            raise IpassrError(f"{self.paths.root}: nothing to resume (no {path.relative_to(self.paths.root)})")
        checkpoint = read_checkpoint(path)
        saved = config_from_dict(checkpoint["config"], str(path))
        requested = self._absolute_paths(requested)
        keys = overrides if overrides is not None else {
            k for k, v in requested.to_dict().items() if v != TrainConfig().to_dict()[k]}
        changed = {k: getattr(requested, k) for k in keys if getattr(requested, k) != getattr(saved, k)}
        merged = saved.__class__(**{**saved.__dict__, **changed})
        if "scale" in changed and changed["scale"] is None:
            merged = saved.__class__(**{**merged.__dict__, "scale": saved.scale})
        differences = architecture_differences(saved, merged)
        if differences:
            raise IpassrError(f"{self.paths.root}: cannot resume: the run was trained with a different "
                              f"network ({'; '.join(differences)})")
        self.resumed_changes = sorted(k for k in changed if k != "scale")
        self.config = merged
        return checkpoint

    @staticmethod
    def _absolute_paths(config: TrainConfig) -> TrainConfig:
        """Paths saved absolute, so a resume or a repeat from another directory finds the files."""
        paths = {k: str(Path(getattr(config, k)).absolute())
                 for k in ("patches", "validate", "init_weights") if getattr(config, k) is not None}
        return config.__class__(**{**config.__dict__, **paths})

    def _open_source(self, config: TrainConfig) -> PatchSource:
        if config.patches is None:
            raise IpassrError("no training data: give --patches FILE (made by `ipassr prepare patches`)")
        return open_patches(config.patches)

    @staticmethod
    def _resolve_scale(config: TrainConfig, source: PatchSource) -> TrainConfig:
        where = getattr(source, "path", "patches")
        if config.scale is not None and config.scale != source.scale:
            raise IpassrError(f"{where}: patches are for x{source.scale} but the run trains "
                              f"x{config.scale} (--scale {config.scale})")
        if config.scale is None:
            return config.__class__(**{**config.__dict__, "scale": source.scale})
        return config

    def _check_data(self, config: TrainConfig, source: PatchSource) -> None:
        where = getattr(source, "path", "patches")
        if len(source) < config.batch_size:
            raise IpassrError(f"{where}: holds {len(source)} patches, fewer than one batch "
                              f"({config.batch_size}); lower --batch-size or add data")
        height, width = patch_shape(source)
        if config.lr_crop is not None and (config.lr_crop[0] > height or config.lr_crop[1] > width):
            raise IpassrError(f"lr_crop {config.lr_crop[0]}x{config.lr_crop[1]} is larger than the "
                              f"{height}x{width} LR patches of {where}")
        if config.validate is not None:
            from .evaluation import find_datasets

            if not Path(config.validate).is_dir():
                raise IpassrError(f"--validate {config.validate}: no such folder")
            find_datasets(config.validate, config.scale)  # a bad test root fails now, not after an epoch
        if config.batch_size % self.env.world_size:
            raise IpassrError(f"batch size {config.batch_size} cannot be split evenly over "
                              f"{self.env.world_size} processes")

    def _configure_backends(self) -> None:
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.config.cudnn_benchmark and not self.config.deterministic
            torch.backends.cuda.matmul.allow_tf32 = self.config.tf32  # fp32 means fp32 unless asked
            torch.backends.cudnn.allow_tf32 = self.config.tf32
        if self.config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic = True

    def _build_network(self, init_weights: PathLike | None) -> IPASSR:
        torch.manual_seed(self.config.seed)
        network = IPASSR.from_config(self.config.model_config())
        self.init_kept: list[str] = []
        if init_weights is not None:
            state, _ = read_state_dict(init_weights)
            shapes = {k: v.shape for k, v in network.state_dict().items()}
            if {k: v.shape for k, v in state.items()} == shapes:
                load_into(network, state, init_weights)
            else:  # another scale or variant: the trunk moves, the rest starts as built
                self.init_kept = transfer_into(network, state, init_weights)
            self.init_weights = str(Path(init_weights).absolute())
        if self.config.sync_batchnorm and self.env.distributed:
            network = convert_batchnorm(network, use_cuda=self.device.type == "cuda")
        network = network.to(self.device)
        if self.config.channels_last:
            network = network.to(memory_format=torch.channels_last)
        return network

    def _wrap(self, network: IPASSR) -> nn.Module:
        model: nn.Module = network
        if self.env.distributed:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(
                network, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=not self.config.loss_sr)  # then some layers may get no loss
        if self.config.compile:
            model = torch.compile(model)
        return model

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["model"]
        load_into(self.network, state, self.paths.last_checkpoint)
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{self.paths.last_checkpoint}: optimizer state does not fit "
                                  f"({exc})") from exc
        self._apply_schedule_config()
        _set_rng_state(checkpoint["rng"])
        self.epoch, self.step_in_epoch = int(checkpoint["epoch"]), int(checkpoint["step_in_epoch"])
        self.global_step = int(checkpoint["global_step"])
        self.best = dict(checkpoint.get("best", {}))

    def _apply_schedule_config(self) -> None:
        """After a restore, let the config (possibly changed on resume) rule Adam and the schedule."""
        c, sched = self.config, self.scheduler
        changed = (sched.step_size, sched.gamma, sched.base_lrs[0]) != (c.lr_step_epochs, c.lr_gamma, c.lr)
        sched.step_size, sched.gamma = c.lr_step_epochs, c.lr_gamma
        for group in self.optimizer.param_groups:
            group["betas"], group["eps"] = (c.adam_beta1, c.adam_beta2), c.adam_eps
            if changed:  # closed form of StepLR for the new schedule
                group["initial_lr"] = c.lr
                group["lr"] = c.lr * c.lr_gamma ** (sched.last_epoch // c.lr_step_epochs)
        if changed:
            sched.base_lrs = [c.lr] * len(sched.base_lrs)
            sched._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    # --- checkpoints

    def checkpoint_payload(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizer, scheduler, RNG, counters, config."""
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "architecture": ARCHITECTURE,
            "model": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "model_config": self.network.config.to_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(), "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step, "best": dict(self.best), "config": self.config.to_dict(),
        }

    def save_checkpoint(self) -> None:
        """Rank 0 writes last.pt, its step-numbered copy and last.safetensors; all ranks agree."""
        failure: IpassrError | None = None
        if self.env.is_main:
            try:
                write_checkpoint(self.checkpoint_payload(), self.paths.last_checkpoint)
                self._keep_numbered_copy()
                save_weights(self.network, self.paths.weights / "last.safetensors",
                             self._weights_metadata())
            except IpassrError as exc:
                failure = exc
            except OSError as exc:
                failure = IpassrError(f"{self.paths.weights}: could not write weights ({exc})")
        if agree(failure is not None, self.env, self._flag_device()):
            raise failure or IpassrError("checkpoint write failed on rank 0")

    def _keep_numbered_copy(self) -> None:
        keep = self.config.keep_checkpoints
        if keep == 0:
            return
        _link_or_copy(self.paths.last_checkpoint,
                      self.paths.checkpoints / f"step-{self.global_step:08d}.pt")
        numbered = sorted(self.paths.checkpoints.glob("step-*.pt"))
        for old in numbered[:-keep]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()

    def _weights_metadata(self) -> dict[str, str]:
        return {"epoch": str(self.epoch), "global_step": str(self.global_step),
                "train_config": json.dumps(self.config.to_dict())}

    def _save_best(self, value: float, metric: str, higher_is_better: bool) -> None:
        """Export best.safetensors when ``value`` of ``metric`` beats the best so far."""
        best = self.best.get("value")
        if self.best.get("metric") == metric and best is not None and \
                (value <= best if higher_is_better else value >= best):
            return
        self.best = {"metric": metric, "value": float(value), "epoch": self.epoch,
                     "global_step": self.global_step}
        if self.env.is_main:
            path = self.paths.weights / "best.safetensors"
            try:
                save_weights(self.network, path,
                             {**self._weights_metadata(), "best_" + metric: str(value)})
            except OSError as exc:
                why = "disk full" if _is_out_of_space(exc) else str(exc)
                raise IpassrError(f"{path}: could not write the best weights ({why}); the "
                                  "previous file is intact") from exc

    # --- the loop

    def _set_learning_rate(self) -> None:
        """Per-step learning rate when a warm-up or the cosine schedule is asked for (the paper's
        epoch-wise StepLR alone needs nothing here)."""
        lr = learning_rate(self.config, self.global_step, self.epoch, self.steps_per_epoch)
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def train_step(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, float]:
        """One optimisation step on a batch; returns the loss terms as floats."""
        self._set_learning_rate()
        terms = compute_losses(self.model, inputs, self.config.scale, self.config.loss_config(),
                               amp=self.config.amp == "bf16")
        total = terms["total"]
        values = dict(zip(terms, torch.stack([t.detach().float() for t in terms.values()]).tolist()))
        if agree(not math.isfinite(values["total"]), self.env, self._flag_device()):
            shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            kept = (f"the last good checkpoint {self.paths.last_checkpoint} is intact"
                    if self.paths.last_checkpoint.exists() else "no checkpoint had been written yet")
            raise TrainingDiverged(
                f"loss is not finite at epoch {self.epoch + 1}, step {self.step_in_epoch + 1} "
                f"(global step {self.global_step + 1}; {shown}); stopped without updating the "
                f"weights; {kept}. Try a lower --lr or --grad-clip, or --amp off")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return values

    def batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """The remaining batches of the current epoch, as float inputs on the device."""
        plan = epoch_plan(len(self.source), patch_shape(self.source),
                          Augmentation(self.config.hflip, self.config.vflip, self.config.lr_crop),
                          self.config.seed, self.epoch)
        sampler = EpochBatches(plan, self.config.batch_size, self.env.rank, self.env.world_size,
                               start_step=self.step_in_epoch)
        loader = make_loader(self.dataset, sampler, self.config.workers,
                             pin_memory=self.device.type == "cuda")
        for batch in loader:
            yield to_inputs(batch, self.device, self.config.channels_last)

    def fit(self, max_steps: int | None = None, time_limit: float | None = None,
            handle_signals: bool = True) -> FitResult:
        """Train until the last epoch, ``max_steps`` (a total step count) or ``time_limit`` seconds.

        SIGINT / SIGTERM finish the current step and write a checkpoint before returning.
        """
        started = time.monotonic()
        self._log_event("resume" if self.global_step else "start")
        status = "error"
        try:
            with self._signals(handle_signals), self._progress_bar(max_steps) as bar:
                result = self._run(max_steps, time_limit, started, bar)
            status = result.status
            return result
        finally:
            self._log_event("stop", status=status)
            self.log.close()

    def _run(self, max_steps: int | None, time_limit: float | None, started: float, bar
             ) -> FitResult:
        step_time = None
        while self.epoch < self.config.epochs:
            if self._budget_spent(max_steps, time_limit, started, step_time):
                return self._stop("budget")
            tick = time.monotonic()
            stopping = False
            for inputs in self.batches():
                values = self.train_step(inputs)
                self.step_in_epoch += 1
                self.global_step += 1
                now = time.monotonic()
                step_time = now - tick if step_time is None else 0.9 * step_time + 0.1 * (now - tick)
                tick = now
                self._after_step(values, step_time, bar)
                stopping = agree(self._stop_signal is not None
                                 or self._budget_spent(max_steps, time_limit, started, step_time),
                                 self.env, self._flag_device())
                if stopping:
                    break
                self._periodic(step_time)
            if self.step_in_epoch >= self.steps_per_epoch:
                self._end_epoch(validate=not (stopping and self._stop_signal is not None))
            elif stopping:
                self.save_checkpoint()
            if stopping:
                status = "interrupted" if self._stop_signal is not None else "budget"
                return FitResult(status, self.epoch, self.global_step, self._stop_signal)
        return FitResult("finished", self.epoch, self.global_step)

    def _stop(self, status: str) -> FitResult:
        return FitResult(status, self.epoch, self.global_step, self._stop_signal)

    def _budget_spent(self, max_steps: int | None, time_limit: float | None, started: float,
                      step_time: float | None) -> bool:
        """True when the step budget is used up, or the next step would overrun the time limit."""
        if max_steps is not None and self.global_step >= max_steps:
            return True
        if time_limit is not None:
            margin = 1.5 * step_time if step_time is not None else 0.0
            return time.monotonic() - started + margin >= time_limit
        return False

    def _periodic(self, step_time: float) -> None:
        """Step-based checkpoints and validation."""
        every = self.config.checkpoint_every_steps
        if every and self.global_step % every == 0 and self.step_in_epoch < self.steps_per_epoch:
            self.save_checkpoint()
        every = self.config.validate_every_steps
        if every and self.config.validate and self.global_step % every == 0:
            self._validate()

    def _end_epoch(self, validate: bool = True) -> None:
        """LR schedule step, validation, best weights and the epoch checkpoint."""
        mean_loss = self._epoch_loss_sum / max(self._epoch_loss_count, 1)
        self._epoch_loss_sum, self._epoch_loss_count = 0.0, 0
        self.scheduler.step()
        self.epoch += 1
        self.step_in_epoch = 0
        self._log({"event": "epoch", "epochs_done": self.epoch, "global_step": self.global_step,
                   "mean_loss": mean_loss})
        if validate and self.config.validate and self.epoch % self.config.validate_every_epochs == 0:
            self._validate()
        if not self.config.validate and math.isfinite(mean_loss):
            self._save_best(mean_loss, "epoch_loss", higher_is_better=False)
        self.save_checkpoint()

    def _validate(self) -> dict[str, dict[str, float]] | None:
        scores = None
        if self.env.is_main:
            scores = validate(self.network, self.config.validate, self.config.scale, self.device,
                              self.config.validate_max_scenes)
            record = {"event": "validation", "epochs_done": self.epoch,
                      "global_step": self.global_step, "val": scores}
            if self.config.validate_correspondence and self.network.attention is not None:
                record["correspondence"] = validate_correspondence(self.network, self.device)
            self._log(record)
            mean_left = float(np.mean([s["left_psnr"] for s in scores.values()]))
            self._save_best(mean_left, "val_left_psnr", higher_is_better=True)
        barrier(self.env)
        return scores

    def _after_step(self, values: dict[str, float], step_time: float, bar) -> None:
        self._epoch_loss_sum += values["total"]
        self._epoch_loss_count += 1
        lr = self.optimizer.param_groups[0]["lr"]
        rate = self.config.batch_size / step_time if step_time > 0 else float("nan")
        if bar is not None:
            bar.set_description(f"epoch {self.epoch + 1}/{self.config.epochs}", refresh=False)
            bar.set_postfix(loss=f"{values['total']:.4f}", lr=f"{lr:.2e}",
                            samples_s=f"{rate:.1f}", refresh=False)
            bar.update(1)
        if self.global_step % self.config.log_every_steps == 0:
            self._log({"event": "step", "epoch": self.epoch + 1, "step": self.step_in_epoch,
                       "global_step": self.global_step, "lr": lr, "samples_per_s": rate,
                       "loss": {k: values[k] for k in LOSS_KEYS if k in values}})

    def _log(self, record: dict[str, Any]) -> None:
        record.setdefault("time", time.time())
        self.log.write(record)

    def _log_event(self, event: str, **extra: Any) -> None:
        record = {"event": event, "epochs_done": self.epoch, "global_step": self.global_step, **extra}
        if event in ("start", "resume"):
            record.update(config=self.config.to_dict(), world_size=self.env.world_size,
                          device=str(self.device))
            if event == "start" and self.init_weights is not None:
                record.update(init_weights=self.init_weights, init_kept=self.init_kept)
            if event == "resume" and self.resumed_changes:
                record["changed"] = self.resumed_changes
        self._log(record)

    def _flag_device(self) -> torch.device:
        """Where agreement flags live: NCCL needs the GPU, Gloo the CPU."""
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    @contextlib.contextmanager
    def _signals(self, enabled: bool):
        """Turn SIGINT/SIGTERM into 'finish this step, checkpoint, stop' (a second one is immediate)."""
        import threading

        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            if self._stop_signal is not None:
                raise KeyboardInterrupt
            self._stop_signal = signum
            if self.env.is_main:
                print(f"\nipassr: {signal.Signals(signum).name} received: finishing the step and "
                      "writing a checkpoint (send again to abort)", file=sys.stderr)

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    @contextlib.contextmanager
    def _progress_bar(self, max_steps: int | None):
        if not (self.progress and self.env.is_main):
            yield None
            return
        from tqdm import tqdm

        total = self.config.epochs * self.steps_per_epoch
        if max_steps is not None:
            total = min(total, max_steps)
        bar = tqdm(total=total, initial=self.global_step, unit="step", dynamic_ncols=True,
                   file=sys.stderr)
        try:
            yield bar
        finally:
            bar.close()


def summary(trainer: Trainer) -> str:
    """One line describing a prepared run (for the CLI)."""
    c = trainer.config
    variant = [n for n, on in (("single-view", not c.attention), ("asymmetric", c.views == "left"),
                               ("replicated-left", c.replicate_left),
                               ("no-whitening", not c.whitening), ("no-valid-mask", not c.valid_mask))
               if on]
    return (f"x{c.scale} iPASSR{' (' + ', '.join(variant) + ')' if variant else ''}: "
            f"{len(trainer.source)} patches, {trainer.steps_per_epoch} steps/epoch x {c.epochs} epochs, "
            f"batch {c.batch_size} over {trainer.env.world_size} process(es) on {trainer.device}, "
            f"from epoch {trainer.epoch + 1} step {trainer.step_in_epoch} (global {trainer.global_step})")


__all__ = ["Trainer", "FitResult", "RunPaths", "TrainingDiverged", "compute_losses", "validate",
           "read_checkpoint", "write_checkpoint", "CHECKPOINT_FORMAT"]
