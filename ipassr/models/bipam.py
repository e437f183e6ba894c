"""Bi-directional parallax attention (biPAM) and the inline occlusion handling of iPASSR.

Shapes: features (B, C, H, W); attention maps (B, H, W, W) indexed (b, row, target column,
source column); valid masks (B, 1, H, W). Attention only ever mixes pixels of the same row
(epipolar line), which is what makes the row-wise helpers below possible.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.1
RELAX_PIXELS = 2  # the valid-mask cycle check tolerates +-2 columns (eq. 7)
MASK_SHARPNESS = 5.0  # tau in V = tanh(tau * P) (eq. 8)


class AttentionMaps(NamedTuple):
    """What biPAM computed for one batch: the two parallax attention maps and the valid masks."""

    right_to_left: torch.Tensor  # M_R->L (B, H, W_left, W_right)
    left_to_right: torch.Tensor  # M_L->R (B, H, W_right, W_left)
    valid_left: torch.Tensor  # V_L (B, 1, H, W)
    valid_right: torch.Tensor  # V_R (B, 1, H, W)


def row_transfer(attention: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Warp ``source`` (B, C, H, W) along its rows with ``attention`` (B, H, W, W): "M (x) X"."""
    warped = torch.matmul(attention, source.permute(0, 2, 3, 1))  # (B, H, W, C)
    return warped.permute(0, 3, 1, 2)


def relax_along(maps: torch.Tensor, dim: int, pixels: int = RELAX_PIXELS,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of ``maps`` shifted by -pixels..+pixels along ``dim`` (zero-filled), into ``out``
    (default: a new tensor). The one relaxation of eq. 7, for training and the fast path alike;
    export writes it out-of-place (``export_bipam``: in-place writes fix ONNX's batch size)."""
    relaxed = maps.clone() if out is None else out.copy_(maps)
    size = maps.shape[dim]
    for shift in range(1, min(pixels, size - 1) + 1):
        relaxed.narrow(dim, shift, size - shift).add_(maps.narrow(dim, 0, size - shift))
        relaxed.narrow(dim, 0, size - shift).add_(maps.narrow(dim, shift, size - shift))
    return relaxed


def relax(attention: torch.Tensor, pixels: int = RELAX_PIXELS) -> torch.Tensor:
    """A (B, H, W, W) map relaxed along its target-column axis (eq. 7's sum over |d| <= 2)."""
    return relax_along(attention, dim=-2, pixels=pixels)


def valid_mask(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """V = tanh(5 * P) with P[i] = sum_j relax(forward)[i, j] * backward[j, i] (eq. 7-8).

    ``forward`` is M_R->L for V_L (M_L->R for V_R) and ``backward`` the opposite map; (B, 1, H, W).
    """
    cycle = (relax(forward) * backward.transpose(-1, -2)).sum(-1)  # (B, H, W)
    return torch.tanh(MASK_SHARPNESS * cycle).unsqueeze(1)


def parallax_attention(query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both attention maps from left queries and right keys, (B, C, H, W) each -> 2 x (B, H, W, W).

    Under autocast (mixed-precision training) the scores and softmaxes are computed in fp32: the
    scores are unscaled and large, and bf16 would round them by whole units. Without autocast
    nothing changes.
    """
    if torch.is_autocast_enabled(query.device.type):
        with torch.autocast(query.device.type, enabled=False):
            return parallax_attention(query.float(), key.float())
    score = torch.matmul(query.permute(0, 2, 3, 1), key.permute(0, 2, 1, 3))  # (B, H, Wl, Wr)
    return torch.softmax(score, dim=-1), torch.softmax(score.transpose(-1, -2), dim=-1)


class TransitionBlock(nn.Module):
    """ResB (256 channels, 4 groups in BiPAM): grouped 3x3 conv, LeakyReLU, grouped 3x3 conv,
    plus input."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, groups=groups)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), LEAKY_SLOPE))


class BiPAM(nn.Module):
    """Bi-directional parallax attention module with inline occlusion handling (Sec. 3.1-3.2).

    ``use_whitening`` and ``use_valid_mask`` switch off the two design choices ablated in the
    paper's Table 3; with no valid mask the converted features replace the originals (V = 1).
    """

    def __init__(self, channels: int = 64, hierarchy_channels: int = 256, groups: int = 4,
                 use_whitening: bool = True, use_valid_mask: bool = True) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(hierarchy_channels)
        self.transition = TransitionBlock(hierarchy_channels, groups)
        self.query = nn.Conv2d(hierarchy_channels, channels, 1, groups=groups)
        self.key = nn.Conv2d(hierarchy_channels, channels, 1, groups=groups)
        self.use_whitening = use_whitening
        self.use_valid_mask = use_valid_mask

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        """BatchNorm of one view: batch statistics in training; each image's own at inference."""
        if self.training:
            return self.norm(features)
        return F.instance_norm(features, weight=self.norm.weight, bias=self.norm.bias,
                               use_input_stats=True, eps=self.norm.eps)

    def embed(self, hierarchy: torch.Tensor, projection: nn.Conv2d) -> torch.Tensor:
        """Hierarchical features (B, 256, H, W) -> whitened query or key (B, 64, H, W)."""
        return self.project(self.normalize(hierarchy), projection)

    def project(self, normalized: torch.Tensor, projection: nn.Conv2d) -> torch.Tensor:
        """Normalised hierarchical features -> whitened query or key: transition block, the 1x1
        ``projection`` (``self.query`` or ``self.key``), then whitening."""
        return self.whiten(projection(self.transition(normalized)))

    def whiten(self, embedded: torch.Tensor) -> torch.Tensor:
        """Subtract each row's mean over the width (the whiten layer, eq. 1)."""
        if self.use_whitening:
            return embedded - embedded.mean(dim=3, keepdim=True)
        return embedded

    def attention_maps(self, hierarchy_left: torch.Tensor, hierarchy_right: torch.Tensor
                       ) -> AttentionMaps:
        """M_R->L, M_L->R and the (gradient-free) valid masks V_L, V_R."""
        query = self.embed(hierarchy_left, self.query)
        key = self.embed(hierarchy_right, self.key)
        right_to_left, left_to_right = parallax_attention(query, key)
        if self.use_valid_mask:
            with torch.no_grad():
                valid_left = valid_mask(right_to_left, left_to_right)
                valid_right = valid_mask(left_to_right, right_to_left)
        else:
            b, h, w, _ = right_to_left.shape
            valid_left = valid_right = right_to_left.new_ones(b, 1, h, w)
        return AttentionMaps(right_to_left, left_to_right, valid_left, valid_right)

    def forward(self, left: torch.Tensor, right: torch.Tensor, hierarchy_left: torch.Tensor,
                hierarchy_right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, AttentionMaps]:
        """Return each view's features with the other view's fused in where valid (eq. 5)."""
        maps = self.attention_maps(hierarchy_left, hierarchy_right)
        converted_left = row_transfer(maps.right_to_left, right)
        converted_right = row_transfer(maps.left_to_right, left)
        out_left = left * (1 - maps.valid_left) + converted_left * maps.valid_left
        out_right = right * (1 - maps.valid_right) + converted_right * maps.valid_right
        return out_left, out_right, maps


# biPAM's eval forward for ONNX / TorchScript export: the same values (eq. 4-8) in operations
# whose exported graphs keep the batch, height and width dynamic.

def _shifted_sum(maps: torch.Tensor, dim: int, pixels: int = RELAX_PIXELS) -> torch.Tensor:
    """Relaxation as a sum of zero-padded shifted copies (no in-place slice writes, which the
    ONNX exporter turns into scatters with a fixed batch size). ``dim`` is -2 or -1."""
    total = maps
    for shift in range(1, pixels + 1):
        if dim == -2:
            total = total + F.pad(maps[..., :-shift, :], (0, 0, shift, 0))
            total = total + F.pad(maps[..., shift:, :], (0, 0, 0, shift))
        else:
            total = total + F.pad(maps[..., :-shift], (shift, 0))
            total = total + F.pad(maps[..., shift:], (0, shift))
    return total


def _instance_norm(bipam: BiPAM, x: torch.Tensor) -> torch.Tensor:
    """Each view by its own statistics, spelled out: the exporter's instance_norm fixes the batch."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    variance = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    norm = bipam.norm
    return ((x - mean) * torch.rsqrt(variance + norm.eps) * norm.weight[:, None, None]
            + norm.bias[:, None, None])


def export_bipam(bipam: BiPAM, feat_left: torch.Tensor, feat_right: torch.Tensor,
                 hier_left: torch.Tensor, hier_right: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """biPAM's eval-mode output (eq. 5) written with export-friendly operations only."""
    query = bipam.project(_instance_norm(bipam, hier_left), bipam.query)
    key = bipam.project(_instance_norm(bipam, hier_right), bipam.key)
    query, key = query.permute(0, 2, 3, 1), key.permute(0, 2, 1, 3)  # (B, H, Wl, C), (B, H, C, Wr)
    score = torch.matmul(query, key)
    right_to_left = torch.softmax(score, dim=-1)
    left_to_right_t = torch.softmax(score, dim=-2)  # M_L->R transposed: (B, H, Wl, Wr)
    conv_left = torch.matmul(right_to_left, feat_right.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    conv_right = torch.matmul(left_to_right_t.transpose(-1, -2),
                              feat_left.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    if not bipam.use_valid_mask:
        return conv_left, conv_right
    cycle_left = (_shifted_sum(right_to_left, -2) * left_to_right_t).sum(-1)
    cycle_right = (right_to_left * _shifted_sum(left_to_right_t, -1)).sum(-2)
    valid_left = torch.tanh(MASK_SHARPNESS * cycle_left).unsqueeze(1)
    valid_right = torch.tanh(MASK_SHARPNESS * cycle_right).unsqueeze(1)
    return (feat_left * (1 - valid_left) + conv_left * valid_left,
            feat_right * (1 - valid_right) + conv_right * valid_right)
