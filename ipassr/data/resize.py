"""MATLAB-exact bicubic resizing (``imresize(img, scale, 'bicubic')``), without MATLAB.

The paper's LR images were made by MATLAB, and PyTorch's antialiased bicubic differs from it at
the borders and in the intermediate rounding, by up to several grey levels. This module
reproduces MATLAB exactly:

* Keys cubic kernel, a = -0.5; when shrinking (scale < 1) the kernel is stretched by 1/scale
  (antialiasing: support 4/scale) and the weights of each output sample are normalised to sum 1;
* 1-based output pixel x samples input position u = x/scale + 0.5 * (1 - 1/scale);
* indices outside the image are mirrored symmetrically (1, 2, .., n, n, n-1, ..);
* output size ceil(scale * input size); the height is resized first, then the width;
* for uint8 input each pass is rounded (half away from zero) and saturated to [0, 255].

``imresize`` is the uint8 NumPy path (pixel-exact against MATLAB); ``imresize_tensor`` is the
float path for tensors (same weights, no rounding, differentiable) for use inside training.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from ..errors import IpassrError

__all__ = ["imresize", "imresize_tensor", "resize_weights", "output_size", "mod_crop", "degrade"]


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5, exactly as MATLAB's ``cubic``."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    return ((1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
            + (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2)))


def output_size(length: int, scale: float) -> int:
    """MATLAB's output length for a scale factor: ceil(scale * length)."""
    return int(math.ceil(scale * length - 1e-9))


@lru_cache(maxsize=64)
def resize_weights(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out, P) float64 and 0-based source indices (out, P) int64 of one resize pass.

    Mirrors MATLAB's ``contributions``: antialiased kernel when shrinking, symmetric borders,
    all-zero tap columns dropped. Cached because a dataset has few distinct sizes.
    """
    kernel_width = 4.0
    if scale < 1:
        kernel_width = kernel_width / scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]   # 1-based, (out, P)
    distance = u[:, None] - indices
    if scale < 1:
        weights = scale * _cubic(scale * distance)
    else:
        weights = _cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices0 = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    keep = np.any(weights != 0, axis=0)
    return np.ascontiguousarray(weights[:, keep]), np.ascontiguousarray(indices0[:, keep])


def resize_axis(image: np.ndarray, axis: int, out_length: int, scale: float) -> np.ndarray:
    """One MATLAB bicubic pass along ``axis`` of an array of any dtype -> float64, unrounded."""
    weights, indices = resize_weights(image.shape[axis], out_length, float(scale))
    source = image.astype(np.float64)
    shape = [1] * image.ndim
    shape[axis] = out_length
    total = np.zeros(image.shape[:axis] + (out_length,) + image.shape[axis + 1:], dtype=np.float64)
    for tap in range(weights.shape[1]):  # loop over the few kernel taps, vectorised over pixels
        total += weights[:, tap].reshape(shape) * np.take(source, indices[:, tap], axis=axis)
    return total


def _resize_axis_uint8(image: np.ndarray, axis: int, out_length: int, scale: float) -> np.ndarray:
    """One MATLAB pass along ``axis`` of a uint8 array (H, W, C), rounded to uint8 like imresizemex."""
    total = resize_axis(image, axis, out_length, scale)
    # MATLAB rounds half away from zero and saturates; values are >= -0.5 here, so floor(x + 0.5).
    return np.clip(np.floor(total + 0.5), 0, 255).astype(np.uint8)


def _check_scale(scale: float) -> float:
    """Return the scale as float; reject non-positive or non-finite values."""
    try:
        value = float(scale)
    except (TypeError, ValueError) as exc:
        raise IpassrError(f"resize scale must be a number, got {scale!r}") from exc
    if not math.isfinite(value) or value <= 0:
        raise IpassrError(f"resize scale must be positive, got {scale!r}")
    return value


def imresize(image: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(image, scale, 'bicubic')`` of a uint8 (H, W) or (H, W, C) image -> uint8.

    Height first, then width, each pass rounded to uint8 as MATLAB does; any positive scale
    (e.g. 1/4 to make x4 LR, 4 to upsample). Output (ceil(sH), ceil(sW), C).
    """
    scale = _check_scale(scale)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"imresize expects a uint8 image, got {array.dtype} (use imresize_tensor for floats)")
    if array.ndim not in (2, 3) or array.shape[0] == 0 or array.shape[1] == 0:
        raise IpassrError(f"imresize expects an (H, W) or (H, W, C) image, got shape {array.shape}")
    out_h, out_w = output_size(array.shape[0], scale), output_size(array.shape[1], scale)
    if out_h == 0 or out_w == 0:
        raise IpassrError(f"resizing a {array.shape[1]}x{array.shape[0]} image by {scale} gives an empty image")
    result = _resize_axis_uint8(array, 0, out_h, scale)
    return _resize_axis_uint8(result, 1, out_w, scale)


def mod_crop(image: np.ndarray, multiple: int) -> np.ndarray:
    """The top-left part of ``image`` (H, W, ...) whose height and width are multiples of ``multiple``."""
    height, width = image.shape[0] // multiple * multiple, image.shape[1] // multiple * multiple
    return np.ascontiguousarray(image[:height, :width])


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """The paper's LR image of a uint8 HR image: crop to a multiple of ``scale``, then MATLAB-exact
    bicubic downscaling by ``scale`` (the paper's degradation, Sec. 4.1)."""
    return imresize(mod_crop(hr, scale), 1.0 / scale)


def _weight_matrix(in_length: int, out_length: int, scale: float, dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor:
    """Dense (out, in) matrix of one resize pass, built from the MATLAB weights and indices."""
    weights, indices = resize_weights(in_length, out_length, float(scale))
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.repeat(np.arange(out_length), weights.shape[1])
    np.add.at(matrix, (rows, indices.ravel()), weights.ravel())  # mirrored taps may repeat an index
    return torch.from_numpy(matrix).to(device=device, dtype=dtype)


def imresize_tensor(tensor: torch.Tensor, scale: float) -> torch.Tensor:
    """Float MATLAB bicubic resize of a tensor (..., H, W): same kernel and borders, no rounding.

    Differentiable (two matrix products), for use inside training; (..., ceil(sH), ceil(sW)).
    """
    scale = _check_scale(scale)
    if tensor.dim() < 2 or not tensor.is_floating_point():
        raise TypeError("imresize_tensor expects a floating-point tensor of shape (..., H, W)")
    height, width = tensor.shape[-2:]
    out_h, out_w = output_size(height, scale), output_size(width, scale)
    rows = _weight_matrix(height, out_h, scale, tensor.dtype, tensor.device)   # (out_h, H)
    cols = _weight_matrix(width, out_w, scale, tensor.dtype, tensor.device)    # (out_w, W)
    return rows @ tensor @ cols.transpose(0, 1)
