"""One training step's pieces: the losses of a batch, the optimiser, the device, the learning rate
of a step."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from ..devices import parse_device
from ..models.training import TrainingObjective, to_float
from .config import TrainConfig
from .distributed import DistEnv


def compute_losses(model: nn.Module, objective: TrainingObjective, inputs: tuple[torch.Tensor, ...],
                   step: int = 0, amp: bool = False) -> dict[str, torch.Tensor]:
    """The training forward of a batch and every loss term (fp32), key ``total`` included.

    ``inputs`` = (lr_left, lr_right, hr_left, hr_right) float (B, 3, h, w) / (B, 3, sh, sw), and
    a fifth, the disparity hints (B, 2, h, w), when the recipe uses them; ``step`` the 0-based
    global step. With ``amp`` the network runs under bf16 autocast (iPASSR's softmax stays fp32
    there); the losses are always computed in fp32 from fp32 copies of the outputs.
    """
    device_type = inputs[0].device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        outputs = objective.forward(model, inputs, step)
    return objective.loss(to_float(outputs) if amp else outputs, inputs)


def make_optimizer(parameters: Iterable[nn.Parameter], config: TrainConfig
                   ) -> torch.optim.Optimizer:
    """Adam (the paper's) or AdamW (NAFSSR's) with the config's betas, epsilon and decay."""
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(parameters, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2),
                eps=config.adam_eps, weight_decay=config.weight_decay)


def run_length(config: TrainConfig, steps_per_epoch: int) -> int:
    """The run's steps in all: ``total_steps``, else ``epochs`` epochs."""
    return config.total_steps or config.epochs * steps_per_epoch


def apply_schedule_config(optimizer: torch.optim.Optimizer,
                          scheduler: torch.optim.lr_scheduler.StepLR, config: TrainConfig) -> None:
    """After a restore, let the config (possibly changed on resume) rule Adam(W) and the
    schedule."""
    c = config
    changed = (scheduler.step_size, scheduler.gamma, scheduler.base_lrs[0]) != (
        c.lr_step_epochs, c.lr_gamma, c.lr)
    scheduler.step_size, scheduler.gamma = c.lr_step_epochs, c.lr_gamma
    for group in optimizer.param_groups:
        group["betas"], group["eps"] = (c.adam_beta1, c.adam_beta2), c.adam_eps
        group["weight_decay"] = c.weight_decay
        if changed:  # closed form of StepLR for the new schedule
            group["initial_lr"] = c.lr
            group["lr"] = c.lr * c.lr_gamma ** (scheduler.last_epoch // c.lr_step_epochs)
    if changed:
        scheduler.base_lrs = [c.lr] * len(scheduler.base_lrs)
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def resolve_device(name: str, env: DistEnv) -> torch.device:
    """'auto' -> this process's GPU when there is one, else the CPU (``devices.parse_device``)."""
    return parse_device(name, env.local_rank)


def learning_rate(config: TrainConfig, global_step: int, epoch: int, steps_per_epoch: int
                  ) -> float | None:
    """The learning rate of the step after ``global_step`` steps, or None for the paper's plain
    StepLR (which the scheduler applies once per epoch).

    cosine: ``lr`` until step ``lr_decay_from``, then a half cosine down to ``lr_min`` at step
    ``lr_total_steps`` (default: the run's last step), ``lr_min`` after; step:
    ``lr * lr_gamma ** (epoch // lr_step_epochs)``. A warm-up scales either linearly from
    1/warmup_steps up to 1 over the first ``warmup_steps`` steps.
    """
    if config.lr_schedule == "step" and config.warmup_steps == 0:
        return None
    if config.lr_schedule == "cosine":
        total = config.lr_total_steps or run_length(config, steps_per_epoch)
        start = min(config.lr_decay_from, total - 1)
        progress = min(max(global_step - start, 0), total - start) / max(total - start, 1)
        lr = config.lr_min + (config.lr - config.lr_min) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        lr = config.lr * config.lr_gamma ** (epoch // config.lr_step_epochs)
    if global_step < config.warmup_steps:
        lr *= (global_step + 1) / config.warmup_steps
    return lr


__all__ = ["compute_losses", "make_optimizer", "apply_schedule_config", "resolve_device", "learning_rate", "run_length"]
