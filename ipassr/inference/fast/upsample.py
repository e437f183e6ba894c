"""The upsampler folded into one LR convolution and run in bands of rows, so that its
s^2-times-wider activations stay small; the bicubic residual added band by band."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...models.ipassr import Upsampler
from .fusion import conv, conv_plus
from .stages import as_dense

UPSAMPLE_BAND_BYTES = 64 * 2 ** 20  # the upsampler's s^2-wide activations, per band


def upsample_band_rows(features: torch.Tensor, scale: int) -> int:
    """LR rows per upsampler band so that its activations stay near 64 MiB: the band's copy of
    the features, and four 3*s^2-channel tensors (bias term, output, shuffled, bicubic)."""
    n, channels, _, width = features.shape
    row_bytes = n * width * (channels + 4 * 3 * scale ** 2) * features.element_size()
    return max(8, UPSAMPLE_BAND_BYTES // row_bytes)


def fold_upsampler(upsampler: Upsampler, scale: int, like: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The upsampler (1x1 conv to C*s^2, pixel shuffle, 3x3 conv to RGB) as one 3x3 convolution
    on the LR grid to 3*s^2 channels, then a pixel shuffle.

    Both convolutions are linear and each HR output's 3x3 neighbourhood lies within a 3x3 LR
    neighbourhood, so their weights compose (in float64). The 1x1 conv's bias enters through a
    channel of ones, so that zero padding drops it at the image border exactly as the HR
    convolution's padding dropped the shuffled features there. At x4 this is 3.4x fewer FLOPs
    (55k instead of 186k per LR pixel) and a 64 -> 48 channel convolution instead of a 64 -> 3 one.

    Returns (weight (3s^2, C, 3, 3), ones_weight (3s^2, 1, 3, 3), bias (3s^2)) in ``like``'s
    dtype and device; output channel o*s^2 + i*s + j is RGB channel o at HR offset (i, j).
    """
    channels = upsampler.to_rgb.in_channels
    expand = upsampler.expand.weight.detach().double().view(channels, scale, scale, -1)
    expand_bias = upsampler.expand.bias.detach().double().view(channels, scale, scale)
    rgb = upsampler.to_rgb.weight.detach().double()  # (3, C, 3, 3)
    weight = rgb.new_zeros(3, scale, scale, expand.shape[-1], 3, 3)
    ones_weight = rgb.new_zeros(3, scale, scale, 3, 3)
    for i in range(scale):
        for j in range(scale):
            for a in (-1, 0, 1):
                for b in (-1, 0, 1):
                    lr_row, sub_row = divmod(i + a, scale)  # LR offset -1..1, HR offset in it
                    lr_col, sub_col = divmod(j + b, scale)
                    taps = rgb[:, :, a + 1, b + 1]  # (3, C): RGB from the HR tap's features
                    weights = taps @ expand[:, sub_row, sub_col]  # (3, C_in) of the LR pixel
                    weight[:, i, j, :, lr_row + 1, lr_col + 1] += weights
                    ones_weight[:, i, j, lr_row + 1, lr_col + 1] += taps @ expand_bias[
                        :, sub_row, sub_col]
    bias = upsampler.to_rgb.bias.detach().double().repeat_interleave(scale * scale)
    outputs = 3 * scale * scale
    return tuple(t.to(like.device, like.dtype) for t in
                 (weight.reshape(outputs, -1, 3, 3), ones_weight.reshape(outputs, 1, 3, 3), bias))


def upsample_rows(upsampler: Upsampler, scale: int, features: torch.Tensor, views: torch.Tensor,
                  out: torch.Tensor, rows: int | None = None, first: int = 0,
                  last: int | None = None) -> None:
    """Write upsampler(features) + bicubic(views) for LR rows first:last into ``out`` (HR rows).

    The upsampler runs folded into one LR convolution (``fold_upsampler``), in bands of ``rows``
    LR rows (default: about 64 MiB of activations; 2-row halo for the bicubic).
    ``features`` and ``views`` cover the same LR rows; ``out`` receives HR rows for first:last.
    """
    height = features.shape[2]
    last = height if last is None else last
    rows = upsample_band_rows(features, scale) if rows is None else rows
    weight, ones_weight, bias = fold_upsampler(upsampler, scale, features)
    for start in range(first, last, rows):
        stop = min(last, start + rows)
        lo, hi = max(0, start - 2), min(height, stop + 2)
        band = as_dense(features[:, :, lo:hi])
        ones = as_dense(band.new_ones(band.shape[0], 1, hi - lo, band.shape[3]))
        hr = F.pixel_shuffle(conv_plus(band, conv(ones, ones_weight, bias, 1), weight, None, 1),
                             scale)
        # bicubic of 3 channels runs faster on NCHW input (identical values; bench/README.md)
        residual = F.interpolate(views[:, :, lo:hi].contiguous(), scale_factor=scale,
                                 mode="bicubic", align_corners=False)
        keep = slice((start - lo) * scale, (stop - lo) * scale)
        torch.add(hr[:, :, keep], residual[:, :, keep],
                  out=out[:, :, (start - first) * scale:(stop - first) * scale])


__all__ = ["fold_upsampler", "upsample_rows", "upsample_band_rows"]
