"""The iPASSR network (Wang et al., CVPRW 2021, Sec. 3 and Fig. 1).

One set of weights super-resolves both views (Siamese): feature extraction (conv + residual dense
group), biPAM exchanging information along epipolar lines, feature fusion with channel attention,
reconstruction (a second residual dense group) and a sub-pixel upsampler on top of a global bicubic
residual. Shapes: LR views (B, 3, H, W) in [0, 1] -> SR views (B, 3, sH, sW).
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from .bipam import LEAKY_SLOPE, AttentionMaps, BiPAM, export_bipam
from .configs import ModelConfig
from .names import IPASSR_ARCHITECTURE as ARCHITECTURE
from .names import is_ipassr_reference, renamed


class DenseLayer(nn.Module):
    """3x3 conv + LeakyReLU whose output is concatenated to its input (one RDB layer)."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, growth, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, F.leaky_relu(self.conv(x), LEAKY_SLOPE)), dim=1)


class ResidualDenseBlock(nn.Module):
    """RDB(G0, C, G): C dense layers, 1x1 local feature fusion back to G0 channels, plus input."""

    def __init__(self, channels: int, growth: int, layers: int = 4) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *[DenseLayer(channels + i * growth, growth) for i in range(layers)])
        self.fuse = nn.Conv2d(channels + layers * growth, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(self.layers(x))


class ResidualDenseGroup(nn.Module):
    """RDG: RDBs in sequence; returns the 1x1-fused output and the concatenation of all RDB outputs.

    The concatenation (B, blocks * channels, H, W) is the hierarchical feature that biPAM uses.
    """

    def __init__(self, channels: int = 64, growth: int = 24, blocks: int = 4) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResidualDenseBlock(channels, growth) for _ in range(blocks))
        self.fuse = nn.Conv2d(blocks * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        hierarchy = torch.cat(outputs, dim=1)
        return self.fuse(hierarchy), hierarchy


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global average pool, 1x1 down by 16, LeakyReLU, 1x1 up, sigmoid."""

    def __init__(self, channels: int = 128, reduction: int = 16) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(channels, channels // reduction, 1)
        self.excite = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True)
        weights = torch.sigmoid(self.excite(F.leaky_relu(self.squeeze(pooled), LEAKY_SLOPE)))
        return x * weights


class Fusion(nn.Module):
    """Fuse a view's own features with those converted from the other view: 128 -> 64 channels."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.dense = ResidualDenseBlock(2 * channels, 32)
        self.channel_attention = ChannelAttention(2 * channels)
        self.project = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, own: torch.Tensor, converted: torch.Tensor) -> torch.Tensor:
        x = torch.cat((own, converted), dim=1)
        return self.project(self.channel_attention(self.dense(x)))


class Upsampler(nn.Module):
    """Sub-pixel upsampling: 1x1 conv to 64*s^2, PixelShuffle(s), 3x3 conv to RGB."""

    def __init__(self, scale: int, channels: int = 64) -> None:
        super().__init__()
        self.expand = nn.Conv2d(channels, channels * scale ** 2, 1)
        self.shuffle = nn.PixelShuffle(scale)
        self.to_rgb = nn.Conv2d(channels, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_rgb(self.shuffle(self.expand(x)))


class IPASSR(nn.Module):
    """iPASSR: super-resolves a stereo pair with one Siamese network.

    ``forward(left, right)`` returns ``(sr_left, sr_right)``; with ``return_attention=True`` it
    returns ``(sr_left, sr_right, AttentionMaps)`` for the losses and visualisations.
    Call ``.eval()`` for inference: biPAM's BatchNorm then normalises each view of each pair by its
    own statistics, as the published evaluation did (docs/design.md, "BatchNorm at inference").
    """

    architecture = ARCHITECTURE

    def __init__(self, scale: int = 4, *, use_attention: bool = True, use_whitening: bool = True,
                 use_valid_mask: bool = True, channels: int = 64) -> None:
        super().__init__()
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        self.config = ModelConfig(scale, use_attention, use_whitening, use_valid_mask, channels)
        self.feature_conv = nn.Conv2d(3, channels, 3, 1, 1)
        self.feature_group = ResidualDenseGroup(channels)
        self.attention = (BiPAM(channels, 4 * channels, use_whitening=use_whitening,
                                use_valid_mask=use_valid_mask) if use_attention else None)
        self.fusion = Fusion(channels)
        self.reconstruction_group = ResidualDenseGroup(channels)
        self.upsampler = Upsampler(scale, channels)

    @classmethod
    def from_config(cls, config: ModelConfig) -> "IPASSR":
        return cls(config.scale, use_attention=config.use_attention,
                   use_whitening=config.use_whitening, use_valid_mask=config.use_valid_mask,
                   channels=config.channels)

    @property
    def scale(self) -> int:
        return self.config.scale

    def extract(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (N, 64, H, W) and hierarchical features (N, 256, H, W) of a stack of views."""
        return self.feature_group(self.feature_conv(views))

    def reconstruct(self, views: torch.Tensor, own: torch.Tensor, converted: torch.Tensor
                    ) -> torch.Tensor:
        """Fused features -> SR views (N, 3, sH, sW), adding the bicubic-upsampled input."""
        features, _ = self.reconstruction_group(self.fusion(own, converted))
        upsampled = F.interpolate(views, scale_factor=self.scale, mode="bicubic",
                                  align_corners=False)
        return self.upsampler(features) + upsampled

    def forward(self, left: torch.Tensor, right: torch.Tensor, return_attention: bool = False):
        if left.shape != right.shape:
            raise ValueError(f"left {tuple(left.shape)} and right {tuple(right.shape)} differ")
        batch = left.shape[0]
        views = torch.cat((left, right), dim=0)  # both views through the shared trunk at once
        features, hierarchy = self.extract(views)
        feat_left, feat_right = features[:batch], features[batch:]
        if self.attention is None:
            converted, maps = features, None
        else:
            conv_left, conv_right, maps = self.attention(
                feat_left, feat_right, hierarchy[:batch], hierarchy[batch:])
            converted = torch.cat((conv_left, conv_right), dim=0)
        sr = self.reconstruct(views, features, converted)
        sr_left, sr_right = sr[:batch], sr[batch:]
        if return_attention:
            return sr_left, sr_right, maps
        return sr_left, sr_right


class ExportForward(nn.Module):
    """Eval-mode iPASSR on one batch of pairs, each view through the trunk on its own."""

    def __init__(self, network: "IPASSR") -> None:
        super().__init__()
        self.network = network
        self.eval()  # the wrapper too: exporters restore its mode, recursively, when they finish

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        network = self.network
        feat_left, hier_left = network.extract(left)
        feat_right, hier_right = network.extract(right)
        if network.attention is None:
            conv_left, conv_right = feat_left, feat_right
        else:
            conv_left, conv_right = export_bipam(network.attention, feat_left, feat_right,
                                                 hier_left, hier_right)
        return (network.reconstruct(left, feat_left, conv_left),
                network.reconstruct(right, feat_right, conv_right))




# Reference parameter names -> ours (prefix rewrites, applied in order, first match wins).
_REFERENCE_TO_OURS = [(re.compile(pattern), repl) for pattern, repl in [
    (r"^init_feature\.", "feature_conv."),
    (r"^deep_feature\.RDB\.(\d+)\.conv\.(\d+)\.conv\.", r"feature_group.blocks.\1.layers.\2.conv."),
    (r"^deep_feature\.RDB\.(\d+)\.LFF\.", r"feature_group.blocks.\1.fuse."),
    (r"^deep_feature\.conv\.", "feature_group.fuse."),
    (r"^reconstruct\.RDB\.(\d+)\.conv\.(\d+)\.conv\.",
     r"reconstruction_group.blocks.\1.layers.\2.conv."),
    (r"^reconstruct\.RDB\.(\d+)\.LFF\.", r"reconstruction_group.blocks.\1.fuse."),
    (r"^reconstruct\.conv\.", "reconstruction_group.fuse."),
    (r"^pam\.bq\.", "attention.query."),
    (r"^pam\.bs\.", "attention.key."),
    (r"^pam\.rb\.body\.0\.", "attention.transition.conv1."),
    (r"^pam\.rb\.body\.2\.", "attention.transition.conv2."),
    (r"^pam\.bn\.", "attention.norm."),
    (r"^fusion\.0\.conv\.(\d+)\.conv\.", r"fusion.dense.layers.\1.conv."),
    (r"^fusion\.0\.LFF\.", "fusion.dense.fuse."),
    (r"^fusion\.1\.conv_du\.0\.", "fusion.channel_attention.squeeze."),
    (r"^fusion\.1\.conv_du\.2\.", "fusion.channel_attention.excite."),
    (r"^fusion\.2\.", "fusion.project."),
    (r"^upscale\.0\.", "upsampler.expand."),
    (r"^upscale\.2\.", "upsampler.to_rgb."),
]]


def reference_to_ours(name: str) -> str:
    """Translate one reference parameter name (e.g. ``pam.bq.weight``) to this package's name."""
    return renamed(name, _REFERENCE_TO_OURS)


def translate_reference(state: Mapping[str, Any]) -> dict[str, Any]:
    """The reference implementation's state dict in our names (ours pass unchanged)."""
    if is_ipassr_reference(state):
        return {reference_to_ours(k): v for k, v in state.items()}
    return dict(state)


def config_from_state_dict(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
                           path: Any = "weights") -> ModelConfig:
    """Work out scale and variant from the metadata, or else from the tensors themselves."""
    if "model_config" in metadata:
        return ModelConfig(**json.loads(metadata["model_config"]))
    expand = state.get("upsampler.expand.weight")
    if expand is None or expand.dim() != 4 or expand.shape[1] == 0:
        raise CheckpointError(f"{path}: not iPASSR weights (no upsampler found)")
    ratio = expand.shape[0] // expand.shape[1]
    scale = round(ratio ** 0.5)
    if scale * scale * expand.shape[1] != expand.shape[0]:
        raise CheckpointError(f"{path}: upsampler of shape {tuple(expand.shape)} fits no scale")
    return ModelConfig(scale=scale, use_attention="attention.query.weight" in state,
                       channels=expand.shape[1])


def from_state(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
               path: Any = "weights", scale: int | None = None, size: str | None = None
               ) -> "IPASSR":
    """The iPASSR network (unloaded, train mode) that these tensors or metadata describe."""
    return IPASSR.from_config(config_from_state_dict(state, metadata, path))


def count_parameters(model: nn.Module) -> int:
    """Number of learnable parameters (the paper's #Params)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["IPASSR", "ModelConfig", "AttentionMaps", "ExportForward", "count_parameters",
           "reference_to_ours", "translate_reference", "from_state", "ARCHITECTURE"]
