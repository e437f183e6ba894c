"""How a network trains: its training forward and its loss terms (a spec's ``loss`` builds them).

A ``NetworkSpec.loss`` is a function of the training config returning a ``TrainingObjective``:

* ``forward(model, inputs, step)``: the training forward of a batch (``model`` may be wrapped
  in DDP or ``torch.compile``, so only its call is used); ``inputs`` = (lr_left, lr_right,
  hr_left, hr_right[, hints]) float (B, 3, h, w) / (B, 3, sh, sw); ``step`` the 0-based global
  step, for anything drawn at random per step (NAFSSR's drop path);
* ``loss(outputs, inputs)``: every loss term (float32 tensors) and their weighted ``total``;
* ``initialise(network)``: the recipe's weight initialisation of a new network (None: as built);
* ``options``: the training config's loss options it reads (``loss``, ``loss_weight``, ...); the
  trainer refuses the others when they are set, rather than ignore them.

A network without one (a plugin's) trains with ``pixel_objective``: the L1 (or MSE) error of
both SR views, ``loss`` in the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

Inputs = tuple[torch.Tensor, ...]
PIXEL_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


@dataclass(frozen=True)
class TrainingObjective:
    """A network's training forward, its loss terms and its initialisation (module docstring)."""

    forward: Callable[[nn.Module, Inputs, int], Any]
    loss: Callable[[Any, Inputs], dict[str, torch.Tensor]]
    initialise: Callable[[nn.Module], None] | None = None
    options: frozenset[str] = frozenset({"loss"})


def pixel_error(kind: str, sr: tuple[torch.Tensor, ...], hr: tuple[torch.Tensor, ...]
                ) -> torch.Tensor:
    """The mean L1 or MSE error over the views, computed over their channel concatenation (as
    BasicSR's stereo models compare (B, 6, H, W) tensors)."""
    return PIXEL_LOSSES[kind](torch.cat(sr, dim=1), torch.cat(hr, dim=1))


def both_views(model: nn.Module, inputs: Inputs, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain forward: (sr_left, sr_right)."""
    return model(inputs[0], inputs[1])


def pixel_objective(kind: str = "l1") -> TrainingObjective:
    """L_SR alone: the ``kind`` ('l1' or 'mse') error of both SR views; the default of a network
    whose spec has no loss."""
    if kind not in PIXEL_LOSSES:
        raise ValueError(f"unknown pixel loss {kind!r} (choose from {', '.join(PIXEL_LOSSES)})")

    def loss(outputs: Any, inputs: Inputs) -> dict[str, torch.Tensor]:
        sr = pixel_error(kind, tuple(outputs[:2]), inputs[2:4])
        return {"sr": sr, "total": sr}

    return TrainingObjective(both_views, loss)


def to_float(outputs: Any) -> Any:
    """``outputs`` with every floating tensor in float32 (bf16 autocast outputs for the losses);
    tuples (named ones too) and lists keep their kind, anything else is returned as it is."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, tuple):
        values = [to_float(o) for o in outputs]
        return type(outputs)(*values) if hasattr(outputs, "_fields") else tuple(values)
    if isinstance(outputs, list):
        return [to_float(o) for o in outputs]
    return outputs


__all__ = ["TrainingObjective", "pixel_objective", "pixel_error", "both_views", "to_float",
           "PIXEL_LOSSES"]
