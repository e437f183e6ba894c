"""What users pass to ``StereoSR`` (paths, PIL images, arrays, tensors) as network batches, and
the results back in the kind and format that came in.

A view travels as ``ipassr.data.io.FloatImage``: colour (H, W, 3) float32 in [0, 1], alpha apart,
and the pixel format to give back (grey or colour, alpha or not, uint8 / uint16 / float32).
Batches are (B, 3, H, W) float32 tensors in [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.io import FLOAT_RANGE_LIMIT, FloatImage, float_views, pil_to_pixels
from ..data.resize import imresize_tensor
from ..errors import IpassrError


def as_view(image: Any, name: str = "image") -> tuple[FloatImage, str]:
    """A PIL image or an array as float views, and its kind ('pil' or 'array') for
    ``give_back``."""
    if isinstance(image, Image.Image):
        return float_views(pil_to_pixels(image, name), name), "pil"
    if isinstance(image, np.ndarray):
        return float_views(image, name), "array"
    raise IpassrError(f"{name}: unsupported image type {type(image).__name__} (use file paths for "
                      "both views, PIL images, NumPy arrays or torch tensors)")


def give_back(view: FloatImage, kind: str) -> Any:
    """A result view as the input came: a PIL image for a PIL image, else an array."""
    pixels = view.pixels()
    return Image.fromarray(pixels) if kind == "pil" else pixels


def view_tensor(view: FloatImage) -> torch.Tensor:
    """The colour of a view as a (1, 3, H, W) tensor (sharing its memory)."""
    return torch.from_numpy(view.colour).permute(2, 0, 1).unsqueeze(0)


def to_batch_tensor(image: Any, name: str = "image") -> tuple[torch.Tensor, str]:
    """Any supported image -> float tensor (B, 3, H, W) in [0, 1], and the input's kind
    ('tensor' for (B, 3, H, W), 'tensor3' for (3, H, W), else ``as_view``'s)."""
    if not isinstance(image, torch.Tensor):
        view, kind = as_view(image, name)
        return view_tensor(view), kind
    tensor = image.unsqueeze(0) if image.dim() == 3 else image
    if tensor.dim() != 4 or tensor.shape[1] != 3:
        raise IpassrError(f"{name}: expected a tensor (3, H, W) or (B, 3, H, W), "
                          f"got shape {tuple(image.shape)}")
    if not tensor.is_floating_point():
        raise IpassrError(f"{name}: expected a float tensor in [0, 1], got {tensor.dtype}")
    top = float(tensor.max()) if tensor.numel() else 0.0
    if top > FLOAT_RANGE_LIMIT:
        raise IpassrError(f"{name}: float values must be in [0, 1], but they reach {top:g} "
                          "(divide by 255, or pass uint8 values)")
    return tensor, "tensor" if image.dim() == 4 else "tensor3"


def channels_equal(batch: torch.Tensor) -> torch.Tensor:
    """(B,) bool: which images of a (B, 3, H, W) batch have three equal channels (grey)."""
    flat = batch.flatten(2)
    return (flat[:, 0] == flat[:, 1]).all(dim=1) & (flat[:, 1] == flat[:, 2]).all(dim=1)


def grey_where_grey(sr: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
    """SR views (B, 3, sH, sW) with the channels' mean in all three where ``grey`` (B,) holds:
    grey in, grey out (the network itself tints grey pairs slightly)."""
    if not bool(grey.any()):
        return sr
    mean = sr.mean(dim=1, keepdim=True).expand_as(sr)
    return mean if bool(grey.all()) else torch.where(grey[:, None, None, None], mean, sr)


def grey_pairs(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the pairs of a batch whose two views are both grey."""
    return channels_equal(left) & channels_equal(right)


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """An alpha plane (H, W) float32 upscaled by MATLAB's bicubic (``imresize_tensor``), clamped
    to [0, 1]: (sH, sW)."""
    return imresize_tensor(torch.from_numpy(alpha), scale).clamp_(0, 1).numpy()


def result_view(sr: torch.Tensor, lr: FloatImage, scale: int) -> FloatImage:
    """One SR view (3, sH, sW) with the LR view's alpha upscaled and its format."""
    alpha = None if lr.alpha is None else upscale_alpha(lr.alpha, scale)
    return FloatImage(sr.permute(1, 2, 0).cpu().numpy(), alpha, lr.format)
