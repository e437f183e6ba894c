"""Convolutions with their epilogue fused into them (oneDNN on the CPU), for fast inference.

A convolution followed by a LeakyReLU, an addition of another tensor, or an accumulation into
an existing tensor costs a separate pass over memory per operation when written with plain
PyTorch ops, and a fresh output buffer (page faults) per convolution. oneDNN, which runs
PyTorch's CPU convolutions anyway, can apply these inside the convolution:

* ``conv(x, w, b, slope=...)``: convolution, bias and optional LeakyReLU in one primitive;
* ``conv_plus(x, other, w, b)``: convolution + ``other`` (e.g. a residual) in one primitive;
* ``conv_accumulate_(acc, x, w)``: ``acc += conv(x, w)`` in place (no temporary, no add pass).

These use ``torch.ops.mkldnn._convolution_pointwise`` (the ops TorchInductor emits for the same
fusions). Where they do not apply (CUDA, half precision, autograd, a PyTorch without oneDNN,
layouts other than channels_last) the same results come from ``F.conv2d`` and in-place adds.
Both paths equal the plain ops to float32 rounding (tests/test_fused.py).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F


def _pair(value: int) -> list[int]:
    return [value, value]


def fusion_available() -> bool:
    """Whether this PyTorch has oneDNN's fused CPU convolutions."""
    return (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


_FUSED = fusion_available()


@contextlib.contextmanager
def fusion_disabled() -> Iterator[None]:
    """Within the block, always take the plain-op path (to compare the two, or to debug)."""
    global _FUSED
    previous, _FUSED = _FUSED, False
    try:
        yield
    finally:
        _FUSED = previous


def _fusable(*tensors: torch.Tensor) -> bool:
    """oneDNN fusion applies: float32 channels_last CPU tensors, no autograd."""
    return (_FUSED and not torch.is_grad_enabled()
            and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.dim() == 4
                    and t.is_contiguous(memory_format=torch.channels_last) for t in tensors))


def conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int = 0,
         groups: int = 1, slope: float | None = None) -> torch.Tensor:
    """Stride-1 ``conv2d(x, weight, bias)``, then LeakyReLU(slope) if ``slope`` is given."""
    if _fusable(x):
        attr, scalars = ("leaky_relu", [slope]) if slope is not None else ("none", [])
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, _pair(padding), _pair(1), _pair(1), groups, attr, scalars, "")
    out = F.conv2d(x, weight, bias, 1, padding, 1, groups)
    return out if slope is None else F.leaky_relu_(out, slope)


def conv_plus(x: torch.Tensor, other: torch.Tensor, weight: torch.Tensor,
              bias: torch.Tensor | None, padding: int = 0, groups: int = 1) -> torch.Tensor:
    """``conv2d(x, weight, bias) + other`` (other: the output's shape), as a new tensor."""
    if _fusable(x, other):
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, weight, bias, _pair(padding), _pair(1), _pair(1), groups, "add", 1.0,
            None, [], None)
    return F.conv2d(x, weight, bias, 1, padding, 1, groups).add_(other)


def conv_accumulate_(acc: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                     padding: int = 0, groups: int = 1) -> torch.Tensor:
    """``acc += conv2d(x, weight)`` in place (no bias); returns ``acc``."""
    if _fusable(acc, x):
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            acc, x, weight, None, _pair(padding), _pair(1), _pair(1), groups, "add", 1.0,
            None, [], None)
    return acc.add_(F.conv2d(x, weight, None, 1, padding, 1, groups))


__all__ = ["conv", "conv_plus", "conv_accumulate_", "fusion_available", "fusion_disabled"]
