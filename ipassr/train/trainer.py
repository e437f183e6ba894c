"""The Trainer: any registered network by its recipe, resumable, observable, distributed.

``Trainer(config, run_dir)`` builds or resumes a run of the network ``config.arch`` (its folder:
``ipassr.train.run``); the network's spec gives its training objective (``ipassr.models.training``).
``fit`` trains until the last epoch (or ``total_steps``), a step budget or a time limit,
checkpointing on the way and on SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..models.checkpoint import load_into, save_weights
from ..errors import CheckpointError, IpassrError
from ..data.io import PathLike
from ..models.registry import get_network, network_options
from .config import TrainConfig, config_from_dict, save_config
from .data import (Augmentation, EpochBatches, PatchDataset, PatchSource, epoch_plan,
                   make_loader, patch_shape, to_inputs)
from .distributed import DistEnv, agree, barrier, init_distributed
from .interrupts import StopRequest, interrupts_blocked_while_workers_start
from .setup import (absolute_paths, build_network, check_data, configure_backends, file_sha256,
                    objective_for, open_source, replaced_init_weights, resolve_network,
                    resolve_scale, resumed_config, wrap)
from .report import REDRAW_EVENTS, redraw
from .run import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, RunLog, RunPaths, is_out_of_space,
                  keep_numbered_copies, progress_bar, rng_state, set_rng_state, read_checkpoint,
                  write_checkpoint)
from .step import (apply_schedule_config, compute_losses, learning_rate, make_optimizer,
                   resolve_device, run_length)
from .validation import validate, validate_correspondence

class TrainingDiverged(IpassrError):
    """The loss became NaN or infinite; the last good checkpoint was left untouched."""


@dataclass
class FitResult:
    """How ``Trainer.fit`` ended: 'finished', 'budget' (max steps / time limit) or 'interrupted'."""

    status: str
    epoch: int
    global_step: int
    signal: int | None = None


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
        self.resume_notes: list[str] = []  # what a user resuming should know (the CLI prints them)
        if resume and init_weights is not None:
            raise IpassrError("--init-weights starts a new run; it cannot be combined with --resume")
        checkpoint = self._load_resume_state(config, overrides) if resume else None
        if checkpoint is None:
            self._refuse_existing_run()
        config = self.config if checkpoint is not None else config
        if checkpoint is None and init_weights is None:
            init_weights = config.init_weights
        self.env = init_distributed(use_cuda=resolve_device(config.device, DistEnv()).type == "cuda")
        self.device = resolve_device(config.device, self.env)
        self.source = source if source is not None else open_source(config)
        self.config = absolute_paths(resolve_network(resolve_scale(config, self.source)))
        self.spec = get_network(self.config.arch)
        self.objective = objective_for(self.spec, self.config)
        check_data(self.config, self.source, self.env.world_size)
        configure_backends(self.config, self.device)
        self.network, self.init_kept = build_network(self.config, self.objective, init_weights,
                                                     self.env, self.device)
        self.init_weights = None if init_weights is None else str(Path(init_weights).absolute())
        self.init_sha256 = (checkpoint.get("init_sha256") if checkpoint is not None else
                            None if init_weights is None else file_sha256(init_weights))
        self.optimizer = make_optimizer(self.network.parameters(), self.config)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=self.config.lr_step_epochs, gamma=self.config.lr_gamma)
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.best: dict[str, Any] = {}
        if checkpoint is not None:
            self._restore(checkpoint)
        self.model = wrap(self.network, self.config, self.env, self.device)
        self.dataset = PatchDataset(self.source, self.config.lr_crop, self.config.replicate_left,
                                    hints=self.config.hint_weight > 0,
                                    hflip_swap=self.config.hflip_swap)
        self.steps_per_epoch = len(self.source) // self.config.batch_size
        self.total_steps = run_length(self.config, self.steps_per_epoch)
        self.epochs = -(-self.total_steps // self.steps_per_epoch)  # the last may be partial
        self.log = RunLog(self.paths.log, self.paths.tensorboard if self.config.tensorboard else None,
                          enabled=self.env.is_main)
        if self.env.is_main:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.paths.config)
            if checkpoint is not None:
                self.log.truncate_after(self.global_step)
        self._stop = StopRequest(announce=self.env.is_main)
        self._epoch_loss_sum = 0.0
        self._epoch_loss_count = 0
        self._validated_at: int | None = None  # a step both schedules hit is validated once

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
        self.config, self.resumed_changes = resumed_config(saved, requested, overrides,
                                                           self.paths.root)
        note = replaced_init_weights(requested, overrides, checkpoint.get("init_sha256"))
        self.resume_notes += [note] if note else []
        return checkpoint

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["model"]
        load_into(self.network, state, self.paths.last_checkpoint)
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{self.paths.last_checkpoint}: optimizer state does not fit "
                                  f"({exc})") from exc
        apply_schedule_config(self.optimizer, self.scheduler, self.config)
        set_rng_state(checkpoint["rng"])
        self.epoch, self.step_in_epoch = int(checkpoint["epoch"]), int(checkpoint["step_in_epoch"])
        self.global_step = int(checkpoint["global_step"])
        self.best = dict(checkpoint.get("best", {}))

    # --- checkpoints

    def checkpoint_payload(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizer, scheduler, RNG, counters, config."""
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "architecture": self.spec.tag,
            "model": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "model_config": network_options(self.network),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(), "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step, "best": dict(self.best), "config": self.config.to_dict(),
            "init_sha256": self.init_sha256,
        }

    def save_checkpoint(self) -> None:
        """Rank 0 writes last.pt, its step-numbered copy and last.safetensors; all ranks agree."""
        failure: IpassrError | None = None
        if self.env.is_main:
            try:
                write_checkpoint(self.checkpoint_payload(), self.paths.last_checkpoint)
                keep_numbered_copies(self.paths, self.global_step,
                                     self.config.keep_checkpoints)
                save_weights(self.network, self.paths.weights / "last.safetensors",
                             self._weights_metadata())
            except IpassrError as exc:
                failure = exc
            except OSError as exc:
                failure = IpassrError(f"{self.paths.weights}: could not write weights ({exc})")
        if agree(failure is not None, self.env, self._flag_device()):
            raise failure or IpassrError("checkpoint write failed on rank 0")

    def _weights_metadata(self) -> dict[str, str]:
        """The run's position, config and the network's size (``save_weights`` adds the
        network and its options), so that ``infer`` / ``evaluate`` / ``export`` find it."""
        size = {"model_size": self.config.model_size} if self.config.model_size else {}
        return {"epoch": str(self.epoch), "global_step": str(self.global_step),
                "train_config": json.dumps(self.config.to_dict()), **size}

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
                why = "disk full" if is_out_of_space(exc) else str(exc)
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
        terms = compute_losses(self.model, self.objective, inputs, self.global_step,
                               amp=self.config.autocast)
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
                          Augmentation(self.config.hflip, self.config.vflip, self.config.lr_crop,
                                       self.config.channel_shuffle),
                          self.config.seed, self.epoch)
        sampler = EpochBatches(plan, self.config.batch_size, self.env.rank, self.env.world_size,
                               start_step=self.step_in_epoch)
        loader = make_loader(self.dataset, sampler, self.config.workers,
                             pin_memory=self.device.type == "cuda")
        with interrupts_blocked_while_workers_start():
            loaded = iter(loader)
        for batch in loaded:
            yield to_inputs(batch, self.device, self.config.channels_last)

    def _batches_until_stopped(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """``batches()``, ended quietly when a DataLoader worker dies of the signal that also
        stops this run (where workers cannot be born with it blocked); any other loader failure
        propagates.
        """
        iterator = self.batches()
        while True:
            try:
                yield next(iterator)
            except StopIteration:
                return
            except RuntimeError as error:
                if "DataLoader worker" not in str(error):
                    raise
                time.sleep(0.5)  # the signal that killed the worker reaches us too
                if self._stop.signal is None:
                    raise
                return

    def fit(self, max_steps: int | None = None, time_limit: float | None = None,
            handle_signals: bool = True) -> FitResult:
        """Train until the last epoch, ``max_steps`` (a total step count) or ``time_limit`` seconds.

        SIGINT / SIGTERM finish the current step and write a checkpoint before returning.
        """
        started = time.monotonic()
        self._log_event("resume" if self.global_step else "start")
        status = "error"
        if self.config.total_steps is not None:  # a run measured in steps ends mid-epoch
            max_steps = min(max_steps or self.total_steps, self.total_steps)
        try:
            with self._stop.catching(handle_signals), progress_bar(
                    self.progress and self.env.is_main, min(max_steps or self.total_steps,
                                                            self.total_steps),
                    self.global_step) as bar:
                result = self._run(max_steps, time_limit, started, bar)
            status = result.status
            return result
        finally:
            self._log_event("stop", status=status)
            self.log.close()

    def _run(self, max_steps: int | None, time_limit: float | None, started: float, bar
             ) -> FitResult:
        step_time = None
        while self.epoch < self.epochs:
            if self._budget_spent(max_steps, time_limit, started, step_time):
                return FitResult(self._stopped(), self.epoch, self.global_step)
            tick = time.monotonic()
            stopping = False
            for inputs in self._batches_until_stopped():
                values = self.train_step(inputs)
                self.step_in_epoch += 1
                self.global_step += 1
                now = time.monotonic()
                step_time = now - tick if step_time is None else 0.9 * step_time + 0.1 * (now - tick)
                tick = now
                self._after_step(values, step_time, bar)
                stopping = agree(self._stop.signal is not None
                                 or self._budget_spent(max_steps, time_limit, started, step_time),
                                 self.env, self._flag_device())
                if stopping:
                    break
                self._periodic(step_time)
            stopping = stopping or self._stop.signal is not None  # a loader stopped by the signal
            # the run's last step is validated off the schedule too: its log ends with the
            # numbers of the weights it leaves
            the_end = stopping and max_steps is not None and self.global_step >= max_steps
            if self.step_in_epoch >= self.steps_per_epoch:
                self._end_epoch(validate=not (stopping and self._stop.signal is not None),
                                the_end=the_end)
            elif stopping:
                if the_end and self.config.validate:
                    self._validate()
                self.save_checkpoint()
            if stopping:
                return FitResult(self._stopped(), self.epoch, self.global_step, self._stop.signal)
        return FitResult("finished", self.epoch, self.global_step)

    def _stopped(self) -> str:
        """Why the run stopped before its last epoch's end: a signal, its last step
        (``total_steps``), or a budget (``max_steps``, a time limit)."""
        if self._stop.signal is not None:
            return "interrupted"
        return "finished" if self.global_step >= self.total_steps else "budget"

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

    def _end_epoch(self, validate: bool = True, the_end: bool = False) -> None:
        """LR schedule step, validation (every few epochs, and at the run's last step), best
        weights and the epoch checkpoint."""
        mean_loss = self._epoch_loss_sum / max(self._epoch_loss_count, 1)
        self._epoch_loss_sum, self._epoch_loss_count = 0.0, 0
        self.scheduler.step()
        self.epoch += 1
        self.step_in_epoch = 0
        self._log({"event": "epoch", "epochs_done": self.epoch, "global_step": self.global_step,
                   "mean_loss": mean_loss})
        on_schedule = self.epoch % self.config.validate_every_epochs == 0
        if validate and self.config.validate and (on_schedule or the_end):
            self._validate()
        if not self.config.validate and math.isfinite(mean_loss):
            self._save_best(mean_loss, "epoch_loss", higher_is_better=False)
        self.save_checkpoint()

    def _validate(self) -> None:
        if self._validated_at == self.global_step:
            return
        self._validated_at = self.global_step
        if self.env.is_main:
            scores = validate(self.network, self.config.validate, self.config.scale, self.device,
                              self.config.validate_max_scenes)
            record = {"event": "validation", "epochs_done": self.epoch,
                      "global_step": self.global_step, "val": scores}
            if self.config.validate_correspondence and self.spec.offers_attention_maps(self.network):
                record["correspondence"] = validate_correspondence(self.network, self.device)
            self._log(record)
            mean_left = float(np.mean([s["left_psnr"] for s in scores.values()]))
            self._save_best(mean_left, "val_left_psnr", higher_is_better=True)
        barrier(self.env)

    def _after_step(self, values: dict[str, float], step_time: float, bar) -> None:
        self._epoch_loss_sum += values["total"]
        self._epoch_loss_count += 1
        lr = self.optimizer.param_groups[0]["lr"]
        rate = self.config.batch_size / step_time if step_time > 0 else float("nan")
        if bar is not None:
            bar.set_description(f"epoch {self.epoch + 1}/{self.epochs}", refresh=False)
            bar.set_postfix(loss=f"{values['total']:.4f}", lr=f"{lr:.2e}",
                            samples_s=f"{rate:.1f}", refresh=False)
            bar.update(1)
        if self.global_step % self.config.log_every_steps == 0:
            self._log({"event": "step", "epoch": self.epoch + 1, "step": self.step_in_epoch,
                       "global_step": self.global_step, "lr": lr, "samples_per_s": rate,
                       "loss": {"total": values["total"], **values}})

    def _log(self, record: dict[str, Any]) -> None:
        record.setdefault("time", time.time())
        self.log.write(record)
        if self.env.is_main and record["event"] in REDRAW_EVENTS:
            redraw(self.paths.root)  # RUN/curves.png (ipassr.train.report)

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


__all__ = ["Trainer", "FitResult", "RunPaths", "TrainingDiverged", "compute_losses", "validate",
           "read_checkpoint", "write_checkpoint", "CHECKPOINT_FORMAT"]
