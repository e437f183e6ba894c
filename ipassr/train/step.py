"""One training step's pieces: the losses of a batch, the device, the learning rate of a step."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..devices import parse_device
from ..models.losses import LossConfig, ipassr_loss
from .config import TrainConfig
from .distributed import DistEnv

LOSS_KEYS = ("total", "sr", "photo", "smooth", "cycle", "cons", "hint")


def compute_losses(network: nn.Module, inputs: tuple[torch.Tensor, ...], scale: int,
                   loss_config: LossConfig, amp: bool = False) -> dict[str, torch.Tensor]:
    """Forward pass of a training batch and every enabled loss term (fp32), key ``total`` included.

    ``inputs`` = (lr_left, lr_right, hr_left, hr_right) float (B, 3, h, w) / (B, 3, sh, sw), and
    a fifth, the disparity hints (B, 2, h, w), when the recipe uses them. With
    ``amp`` the network runs under bf16 autocast (softmax stays fp32 there); the losses are always
    computed in fp32 from fp32 copies of the outputs.
    """
    lr_left, lr_right, hr_left, hr_right = inputs[:4]
    device_type = lr_left.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        sr_left, sr_right, maps = network(lr_left, lr_right, return_attention=True)
    if amp:
        sr_left, sr_right = sr_left.float(), sr_right.float()
        if maps is not None:
            maps = type(maps)(*(m.float() for m in maps))
    return ipassr_loss(sr_left, sr_right, hr_left, hr_right, lr_left, lr_right, maps, scale,
                       loss_config, hints=inputs[4] if len(inputs) > 4 else None)


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


__all__ = ["compute_losses", "resolve_device", "learning_rate", "LOSS_KEYS"]
