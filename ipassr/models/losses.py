"""The five training losses of iPASSR (Sec. 3.3, eq. 9-14), as the reference training computed them.

All terms are mean absolute errors. The photometric, cycle and stereo-consistency terms compare
*residuals* (HR minus the bicubic-upsampled LR, brought back to LR size) rather than images, so that
illuminance differences between the views cancel; each term can be switched to its plain-image form
and each can be switched off, which is what the paper's Table 2 ablates.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .bipam import AttentionMaps, row_transfer
from .configs import LossConfig
from .training import TrainingObjective

LOSS_TERMS = ("sr", "photo", "smooth", "cycle", "cons")


def bicubic(x: torch.Tensor, factor: float) -> torch.Tensor:
    """PyTorch-style bicubic resize by ``factor`` (align_corners=False, no antialias)."""
    return F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)


def masked_l1(target: torch.Tensor, warped: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L1(V * target, V * warped): the error counted only where the valid mask V trusts it."""
    return F.l1_loss(target * valid, warped * valid)


def sr_loss(sr_left, sr_right, hr_left, hr_right, views: str = "both") -> torch.Tensor:
    """L_SR (eq. 9): L1 between each SR view and its HR view."""
    loss = F.l1_loss(sr_left, hr_left)
    if views == "both":
        loss = loss + F.l1_loss(sr_right, hr_right)
    return loss


def lr_residuals(hr_left, hr_right, lr_left, lr_right, scale: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """X_L, X_R = down(|HR - up(LR)|): the high-frequency content missing from bicubic (LR size)."""
    res_left = bicubic((hr_left - bicubic(lr_left, scale)).abs(), 1 / scale)
    res_right = bicubic((hr_right - bicubic(lr_right, scale)).abs(), 1 / scale)
    return res_left, res_right


def photometric_loss(x_left, x_right, maps: AttentionMaps) -> torch.Tensor:
    """L_photo (eq. 10): each view against the other view warped onto it."""
    return (masked_l1(x_left, row_transfer(maps.right_to_left, x_right), maps.valid_left)
            + masked_l1(x_right, row_transfer(maps.left_to_right, x_left), maps.valid_right))


def cycle_loss(x_left, x_right, maps: AttentionMaps) -> torch.Tensor:
    """L_cycle (eq. 12): each view against itself after a round trip to the other view and back."""
    left_to_right = row_transfer(maps.left_to_right, x_left)
    right_to_left = row_transfer(maps.right_to_left, x_right)
    cycle_left = row_transfer(maps.right_to_left, left_to_right)
    cycle_right = row_transfer(maps.left_to_right, right_to_left)
    return (masked_l1(x_left, cycle_left, maps.valid_left)
            + masked_l1(x_right, cycle_right, maps.valid_right))


def smoothness_loss(maps: AttentionMaps) -> torch.Tensor:
    """L_smooth (eq. 11): neighbouring rows and diagonal steps of each map should agree."""
    loss = 0
    for m in (maps.right_to_left, maps.left_to_right):  # (B, H, W, W)
        loss = loss + F.l1_loss(m[:, :-1], m[:, 1:]) \
            + F.l1_loss(m[:, :, :-1, :-1], m[:, :, 1:, 1:])
    return loss


def consistency_loss(y_left, y_right, maps: AttentionMaps) -> torch.Tensor:
    """L_cons (eq. 14) on SR-side quantities, with the attention maps detached, as the reference code does."""
    right_to_left = maps.right_to_left.detach()
    left_to_right = maps.left_to_right.detach()
    return (masked_l1(y_left, row_transfer(right_to_left, y_right), maps.valid_left)
            + masked_l1(y_right, row_transfer(left_to_right, y_left), maps.valid_right))


def hint_loss(maps: AttentionMaps, hints: torch.Tensor) -> torch.Tensor:
    """Not in the paper: the cross-entropy of each attention row at the column a disparity hint names.

    ``hints`` (B, 2, H, W): LR disparities of the left and right view (``ipassr.data.hints``), NaN where
    unknown. Left pixel x should attend to right column x - d, right pixel x to left x + d; a
    fractional column splits the target between its two neighbours. Rows whose hinted column is
    unknown or outside the patch do not count; the mean is over the counted rows, per view.
    """
    total = maps.right_to_left.new_zeros((), dtype=torch.float32)
    for view, (attention, sign) in enumerate(((maps.right_to_left, -1.0), (maps.left_to_right, 1.0))):
        width = attention.shape[-1]
        columns = torch.arange(width, device=attention.device, dtype=torch.float32)
        target = columns + sign * hints[:, view].float()  # (B, H, W)
        counted = torch.isfinite(target) & (target >= 0) & (target <= width - 1)
        target = torch.where(counted, target, torch.zeros_like(target))
        below = target.floor().long()
        above = (below + 1).clamp(max=width - 1)
        share = target - below
        def log_at(column: torch.Tensor) -> torch.Tensor:  # log M at one column per row (B, H, W)
            return attention.gather(-1, column[..., None])[..., 0].float().clamp_min(1e-6).log()

        nll = -((1 - share) * log_at(below) + share * log_at(above))
        total = total + (nll * counted).sum() / counted.sum().clamp_min(1)
    return total


def ipassr_loss(sr_left: torch.Tensor, sr_right: torch.Tensor, hr_left: torch.Tensor,
                hr_right: torch.Tensor, lr_left: torch.Tensor, lr_right: torch.Tensor,
                maps: AttentionMaps | None, scale: int,
                config: LossConfig = LossConfig(), hints: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
    """All enabled loss terms and their weighted total (eq. 15), as a dict with key ``total``.

    LR (B, 3, h, w), SR and HR (B, 3, sh, sw); ``maps`` from the network's ``return_attention``.
    Asymmetric training (``views="left"``) may pass ``sr_right=None``; it has no L_cons.
    With ``config.hint_weight`` > 0, ``hints`` (B, 2, h, w) adds ``hint_weight * hint_loss``.
    """
    terms: dict[str, torch.Tensor] = {}
    if config.sr:
        terms["sr"] = sr_loss(sr_left, sr_right, hr_left, hr_right, config.views)
    if maps is not None and config.needs_attention:
        if config.photo or config.cycle:
            residuals = lr_residuals(hr_left, hr_right, lr_left, lr_right, scale)
        if config.photo:
            terms["photo"] = photometric_loss(
                *(residuals if config.residual_photo else (lr_left, lr_right)), maps)
        if config.smooth:
            terms["smooth"] = smoothness_loss(maps)
        if config.cycle:
            terms["cycle"] = cycle_loss(
                *(residuals if config.residual_cycle else (lr_left, lr_right)), maps)
        if config.cons and config.views == "both":
            terms["cons"] = consistency_loss(
                *_consistency_inputs(sr_left, sr_right, hr_left, hr_right, scale, config), maps)
    total = terms.get("sr", sr_left.new_zeros(()))
    stereo = [terms[k] for k in ("cons", "photo", "smooth", "cycle") if k in terms]
    if "cons" in terms:  # summed in the reference's order: SR + w*cons + w*(photo+smooth+cycle)
        total = total + config.weight * stereo.pop(0)
    if stereo:
        total = total + config.weight * sum(stereo[1:], stereo[0])
    if config.hint_weight > 0 and maps is not None:
        if hints is None:
            raise ValueError("hint_weight > 0 needs the batch's disparity hints")
        terms["hint"] = hint_loss(maps, hints)
        total = total + config.hint_weight * terms["hint"]
    terms["total"] = total
    return terms


def loss_config(config: Any) -> LossConfig:
    """The loss terms a training config asks for (``ipassr.train.TrainConfig``'s names).

    Asymmetric training (views = left) has no right SR view, and L_cons needs both SR views
    (Y_R = down(|HR_R - SR_R|) is warped onto the left), so it drops L_cons.
    """
    return LossConfig(sr=config.loss_sr, photo=config.loss_photo, smooth=config.loss_smooth,
                      cycle=config.loss_cycle, cons=config.loss_cons and config.views == "both",
                      residual_photo=config.residual_photo, residual_cycle=config.residual_cycle,
                      residual_cons=config.residual_cons, weight=config.loss_weight,
                      views=config.views, hint_weight=config.hint_weight)


def training_objective(config: Any) -> TrainingObjective:
    """iPASSR's training step (the paper's, by default): the forward with biPAM's maps and the
    enabled terms of ``ipassr_loss``; ``inputs[4]``, when present, are the disparity hints."""
    terms = loss_config(config)

    def forward(model: nn.Module, inputs: tuple[torch.Tensor, ...], step: int):
        return model(inputs[0], inputs[1], return_attention=True)

    def loss(outputs: Any, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        sr_left, sr_right, maps = outputs
        lr_left, lr_right, hr_left, hr_right = inputs[:4]
        return ipassr_loss(sr_left, sr_right, hr_left, hr_right, lr_left, lr_right, maps,
                           config.scale, terms, hints=inputs[4] if len(inputs) > 4 else None)

    return TrainingObjective(forward, loss, options=frozenset(
        {"loss_sr", "loss_photo", "loss_smooth", "loss_cycle", "loss_cons", "residual_photo",
         "residual_cycle", "residual_cons", "loss_weight", "hint_weight", "views"}))


def _consistency_inputs(sr_left, sr_right, hr_left, hr_right, scale: int, config: LossConfig):
    """Y_L, Y_R = down(|HR - SR|) (residual form) or down(SR) (plain form), at LR size."""
    def project(sr, hr):
        return bicubic((hr - sr).abs() if config.residual_cons else sr, 1 / scale)

    return project(sr_left, hr_left), project(sr_right, hr_right)
