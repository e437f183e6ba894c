"""NAFSSR (Chu, Chen and Yu, "NAFSSR: Stereo Image Super-Resolution Using NAFNet", CVPRW 2022),
as the official class behaves in eval mode and trains (``training_objective``: the official step).

A Siamese stack of NAFBlocks with a stereo cross-attention module (SCAM) after every block:
``intro`` conv -> [NAFBlock on each view, then SCAM between the views] x blocks -> 3x3 conv to
3*s^2 channels + pixel shuffle, plus the bilinearly upsampled input. Shapes: views (B, 3, H, W)
in [0, 1] -> SR views (B, 3, sH, sW); features (B, width, H, W) at LR.

Two behaviours of the official code are reproduced exactly:

* **Test-time local pooling (TLC).** The official class converts every channel attention's global
  average pooling into a local average whose window is 1.5x the (30, 90) LR training crop, i.e.
  (45, 135) LR pixels, computed as valid box means padded back to size with replicate padding;
  an input smaller than the window in both directions gets the global mean.
* **SCAM's scaled attention:** scores Q_l Q_r^T / sqrt(width) along each row; the left view takes
  softmax-weighted right values and vice versa, scaled per channel by beta / gamma.

SCAM runs in chunks of rows (``attention_memory`` bytes of scores), which bounds memory without
changing a value. Banded tiling is not offered: each block's 45-row pooling window and 3x3 depthwise
convolution widen the rows a band would need by ~23 per block, so a band of a 16-block NAFSSR-T
would need its whole image anyway (``docs/zoo.md``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from .names import NAFSSR_SIZES as SIZES  # width, blocks of T, S, B, L
from .names import is_nafssr, renamed
from .training import TrainingObjective, pixel_error

ARCHITECTURE = "nafssr"
TRAIN_CROP = (30, 90)  # the LR training crop the official test-time pooling is sized from
DEFAULT_ATTENTION_MEMORY = 32 * 2 ** 20  # bytes of SCAM scores per chunk of rows


@dataclass(frozen=True)
class NAFSSRConfig:
    """The network's shape: scale, width and number of blocks (T/S/B/L: see ``SIZES``)."""

    scale: int = 4
    width: int = 48
    blocks: int = 16

    @property
    def size_name(self) -> str:
        """'T', 'S', 'B' or 'L' for the published sizes, else 'width x blocks'."""
        for name, shape in SIZES.items():
            if shape == (self.width, self.blocks):
                return name
        return f"{self.width}x{self.blocks}"

    def to_dict(self) -> dict:
        return asdict(self)


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of each pixel (eps 1e-6), with a per-channel affine."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        y = (x - mean) / (var + self.eps).sqrt()
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


def _box_starts(length: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First index of the box each output position averages, and the box size, along one axis.

    The box is ``min(length, window)`` long; the valid boxes are replicate-padded back to
    ``length`` positions with (size - 1) // 2 in front, as the official padding does. ``length``
    is a 0-dim tensor, so that an exported graph keeps the size dynamic.
    """
    size = torch.clamp(length, max=window)
    starts = torch.clamp(torch.arange(length, device=length.device) - (size - 1) // 2, min=0)
    return torch.minimum(starts, length - size), size


def _box_sums(x: torch.Tensor, dim: int, starts: torch.Tensor, size: torch.Tensor
              ) -> torch.Tensor:
    """Sums of ``size`` consecutive values along ``dim`` (-2 or -1) from each start (float64)."""
    cumulative = x.cumsum(dim)
    zeros = torch.zeros_like(cumulative.narrow(dim, 0, 1))
    cumulative = torch.cat((zeros, cumulative), dim=dim)
    return cumulative.index_select(dim, starts + size) - cumulative.index_select(dim, starts)


def local_average(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """TLC's test-time pooling of (B, C, H, W): the mean over each window-sized box that fits,
    replicate-padded back to (H, W); the global mean when the window covers the whole input.

    Written as box sums of float64 cumulative sums (O(1) a pixel, no float32 drift on large
    images; the official float32 cumulative sums agree to rounding) gathered at clamped starts,
    which is the replicate padding; the global mean is the case of one box. No Python branch
    depends on the size, so ONNX/TorchScript exports stay correct at every size.
    """
    shape = torch._shape_as_tensor(x).to(x.device)  # dynamic when traced for export
    rows, height = _box_starts(shape[-2], window[0])
    cols, width = _box_starts(shape[-1], window[1])
    sums = _box_sums(_box_sums(x.double(), -2, rows, height), -1, cols, width)
    return (sums / (height * width)).to(x.dtype)


class SimplifiedChannelAttention(nn.Module):
    """x * conv1x1(pool(x)): NAFNet's SCA, with TLC's local pooling at test time."""

    def __init__(self, channels: int, window: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fits = x.shape[-2] <= self.window[0] and x.shape[-1] <= self.window[1]
        if self.training and fits:  # the official pool's global branch (a training crop fits)
            pooled = x.mean(dim=(2, 3), keepdim=True)
        else:
            pooled = local_average(x, self.window)
        return x * self.conv(pooled)


def simple_gate(x: torch.Tensor) -> torch.Tensor:
    """NAFNet's SimpleGate: the first half of the channels times the second half."""
    first, second = x.chunk(2, dim=1)
    return first * second


class NAFBlock(nn.Module):
    """NAFNet block: LN -> 1x1 (2c) -> depthwise 3x3 -> gate -> SCA -> 1x1, times beta, plus
    input; then LN -> 1x1 (2c) -> gate -> 1x1, times gamma, plus that."""

    def __init__(self, channels: int, window: tuple[int, int]) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, 2 * channels, 1)
        self.conv2 = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, groups=2 * channels)
        self.sca = SimplifiedChannelAttention(channels, window)
        self.conv3 = nn.Conv2d(channels, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, 2 * channels, 1)
        self.conv5 = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.sca(simple_gate(self.conv2(self.conv1(self.norm1(x))))))
        x = x + y * self.beta
        return x + self.conv5(simple_gate(self.conv4(self.norm2(x)))) * self.gamma


class SCAM(nn.Module):
    """Stereo cross-attention: each view takes the other's projected features along its rows.

    Q_l = l_proj1(LN(x_l)), Q_r = r_proj1(LN(x_r)), scores Q_l Q_r^T / sqrt(c) per row (B, H, W, W);
    x_l + beta * softmax(scores) V_r and x_r + gamma * softmax(scores^T) V_l, V = proj2(x).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = channels ** -0.5
        self.norm_l = LayerNorm2d(channels)
        self.norm_r = LayerNorm2d(channels)
        self.l_proj1 = nn.Conv2d(channels, channels, 1)
        self.r_proj1 = nn.Conv2d(channels, channels, 1)
        self.l_proj2 = nn.Conv2d(channels, channels, 1)
        self.r_proj2 = nn.Conv2d(channels, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.attention_memory: int | None = DEFAULT_ATTENTION_MEMORY

    def embeddings(self, left: torch.Tensor, right: torch.Tensor
                   ) -> tuple[torch.Tensor, ...]:
        """Queries and values of both views, (B, H, W, C) each."""
        rows = (lambda t: t.permute(0, 2, 3, 1))  # noqa: E731
        return (rows(self.l_proj1(self.norm_l(left))), rows(self.r_proj1(self.norm_r(right))),
                rows(self.l_proj2(left)), rows(self.r_proj2(right)))

    def scores(self, query_left: torch.Tensor, query_right: torch.Tensor) -> torch.Tensor:
        """(B, r, W, C) x2 -> scaled scores (B, r, W_left, W_right)."""
        return torch.matmul(query_left, query_right.transpose(-1, -2)) * self.scale

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        query_left, query_right, value_left, value_right = self.embeddings(left, right)
        if self.attention_memory is None or self.training:  # whole maps (exports, autograd)
            scores = self.scores(query_left, query_right)
            from_right = torch.matmul(torch.softmax(scores, dim=-1), value_right)
            from_left = torch.matmul(torch.softmax(scores.transpose(-1, -2), dim=-1), value_left)
            return (left + from_right.permute(0, 3, 1, 2) * self.beta,
                    right + from_left.permute(0, 3, 1, 2) * self.gamma)
        batch, height, width, _ = query_left.shape
        per_row = 3 * batch * width * width * query_left.element_size()
        step = max(1, min(height, self.attention_memory // max(per_row, 1)))
        from_right = torch.empty_like(value_left)
        from_left = torch.empty_like(value_right)
        for start in range(0, height, step):
            rows = slice(start, min(height, start + step))
            scores = self.scores(query_left[:, rows], query_right[:, rows])
            from_right[:, rows] = torch.matmul(torch.softmax(scores, dim=-1), value_right[:, rows])
            from_left[:, rows] = torch.matmul(torch.softmax(scores.transpose(-1, -2), dim=-1),
                                              value_left[:, rows])
        return (left + from_right.permute(0, 3, 1, 2) * self.beta,
                right + from_left.permute(0, 3, 1, 2) * self.gamma)

    def row_maps(self, left: torch.Tensor, right: torch.Tensor, row: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention of one image row, right->left (B, W_left, W_right) and left->right."""
        query_left, query_right, _, _ = self.embeddings(left[:, :, row:row + 1],
                                                        right[:, :, row:row + 1])
        scores = self.scores(query_left, query_right)[:, 0]
        return torch.softmax(scores, dim=-1), torch.softmax(scores.transpose(-1, -2), dim=-1)


def drop_path_factors(blocks: int, rate: float, seed: int) -> list[float | None]:
    """Per block: 0.0 to skip it (probability ``rate``), else its residual scale 1 / (1 - rate);
    None everywhere when ``rate`` is 0 (the official block then runs unscaled). Drawn from
    ``seed`` alone, so every process of a distributed run and a resumed run draw the same."""
    if rate <= 0:
        return [None] * blocks
    draws = torch.rand(blocks, generator=torch.Generator().manual_seed(seed))
    return [0.0 if float(d) < rate else 1.0 / (1.0 - rate) for d in draws]


class NAFSSRBlock(nn.Module):
    """A NAFBlock on each view (shared weights), then SCAM between them."""

    def __init__(self, channels: int, window: tuple[int, int]) -> None:
        super().__init__()
        self.block = NAFBlock(channels, window)
        self.cross_attention = SCAM(channels)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cross_attention(self.block(left), self.block(right))


class NAFSSR(nn.Module):
    """NAFSSR of any width and depth; ``forward(left, right) -> (sr_left, sr_right)``."""

    architecture = ARCHITECTURE

    def __init__(self, scale: int = 4, width: int = 48, blocks: int = 16) -> None:
        super().__init__()
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        self.config = NAFSSRConfig(scale, width, blocks)
        window = (TRAIN_CROP[0] * 3 // 2, TRAIN_CROP[1] * 3 // 2)  # (45, 135): official 1.5x
        self.intro = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.ModuleList(NAFSSRBlock(width, window) for _ in range(blocks))
        self.upsampler = nn.Conv2d(width, 3 * scale ** 2, 3, padding=1)
        self.eval()

    @classmethod
    def from_config(cls, config: NAFSSRConfig) -> "NAFSSR":
        return cls(config.scale, config.width, config.blocks)

    @property
    def scale(self) -> int:
        return self.config.scale

    def set_attention_memory(self, budget: int | None) -> None:
        """Bytes of SCAM scores computed at once (rows are chunked to fit; same result); None:
        the whole maps in one expression, as exported graphs need (no loop over rows)."""
        for block in self.blocks:
            block.cross_attention.attention_memory = None if budget is None else max(1, int(budget))

    def features(self, left: torch.Tensor, right: torch.Tensor, upto: int | None = None,
                 drop_path: tuple[float, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Both views' features after ``upto`` blocks (all by default); ``drop_path`` in training."""
        left, right = self.intro(left), self.intro(right)
        blocks = self.blocks[:upto]
        factors = drop_path_factors(len(blocks), *drop_path) if self.training and drop_path \
            else [None] * len(blocks)
        for block, factor in zip(blocks, factors):
            if factor is None:
                left, right = block(left, right)
            elif factor:  # the official DropPath: x + (block(x) - x) / (1 - rate)
                new_left, new_right = block(left, right)
                left, right = left + factor * (new_left - left), right + factor * (new_right - right)
        return left, right

    def forward(self, left: torch.Tensor, right: torch.Tensor,
                drop_path: tuple[float, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """SR views; in training mode ``drop_path = (rate, seed)`` skips whole blocks (both views)
        with probability ``rate``, as the official training does (drawn from ``seed``)."""
        if left.shape != right.shape:
            raise ValueError(f"left {tuple(left.shape)} and right {tuple(right.shape)} differ")
        feat_left, feat_right = self.features(left, right, drop_path=drop_path)
        return (self._reconstruct(feat_left, left), self._reconstruct(feat_right, right))

    def _reconstruct(self, features: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        upsampled = F.interpolate(view, scale_factor=self.scale, mode="bilinear",
                                  align_corners=False)
        return F.pixel_shuffle(self.upsampler(features), self.scale) + upsampled

    def attention_row(self, left: torch.Tensor, right: torch.Tensor, row: int,
                      block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """SCAM's attention maps of one row in block ``block`` (the last by default)."""
        index = len(self.blocks) - 1 if block is None else block
        feat_left, feat_right = self.features(left, right, upto=index)
        block_module = self.blocks[index]
        inner_left, inner_right = block_module.block(feat_left), block_module.block(feat_right)
        return block_module.cross_attention.row_maps(inner_left, inner_right, row)


def training_objective(config: Any) -> TrainingObjective:
    """The official training step's objective (BasicSR's ImageRestorationModel): the pixel loss
    (the recipe's MSE, ``config.loss``) of both views, drop path at ``config.drop_path_rate``
    (the recipes: 0, 0.1, 0.2, 0.3 for T, S, B, L), and BasicSR's ``0 * sum(parameters)``, which
    gives a block that drop path skipped zero gradients rather than none (AdamW still moves it)."""

    def forward(model: nn.Module, inputs: tuple[torch.Tensor, ...], step: int):
        rate = config.drop_path_rate
        seed = (config.seed * 1_000_003 + 2 ** 40 + step) % 2 ** 63  # apart from the data plans'
        drop_path = (rate, seed) if rate > 0 else None
        sr_left, sr_right = model(inputs[0], inputs[1], drop_path=drop_path)
        anchor = sum(p.sum() for p in model.parameters()) * 0.0
        return sr_left, sr_right, anchor

    def loss(outputs: Any, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        sr = pixel_error(config.loss, tuple(outputs[:2]), inputs[2:4])
        return {"sr": sr, "total": sr + outputs[2]}

    return TrainingObjective(forward, loss, options=frozenset({"loss", "drop_path_rate"}))


# Official (BasicSR) parameter names -> ours; the official class wraps each block in DropPath
# (``body.N.module``) and names the upsampler ``up.0``.
_OFFICIAL = [(re.compile(p), r) for p, r in [
    (r"^body\.(\d+)\.module\.blk\.sca\.1\.", r"blocks.\1.block.sca.conv."),
    (r"^body\.(\d+)\.module\.blk\.", r"blocks.\1.block."),
    (r"^body\.(\d+)\.module\.fusion\.", r"blocks.\1.cross_attention."),
    (r"^up\.0\.", "upsampler."),
]]


def official_to_ours(name: str) -> str:
    """One official NAFSSR parameter name (``body.3.module.fusion.l_proj1.weight``) in ours."""
    return renamed(name, _OFFICIAL)


def is_official(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("body.0.module.") for k in state)


def translate_official(state: Mapping[str, Any]) -> dict[str, Any]:
    """An official (BasicSR) NAFSSR state dict in our names (ours pass unchanged)."""
    if is_official(state):
        return {official_to_ours(k): v for k, v in state.items()}
    return dict(state)


def config_from_state(state: Mapping[str, torch.Tensor]) -> NAFSSRConfig:
    """Scale, width and depth read off the tensors (our names)."""
    width = state["intro.weight"].shape[0]
    blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    channels = state["upsampler.weight"].shape[0]
    scale = round((channels / 3) ** 0.5)
    if 3 * scale ** 2 != channels:
        raise ValueError(f"upsampler of {channels} channels fits no scale")
    return NAFSSRConfig(scale, width, blocks)


def from_state(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
               path: Any = "weights", scale: int | None = None, size: str | None = None
               ) -> NAFSSR:
    """The NAFSSR network (unloaded) that the metadata or tensors describe; ``size`` ('T', 'S',
    'B', 'L') is checked against them."""
    config = (NAFSSRConfig(**json.loads(metadata["model_config"])) if "model_config" in metadata
              else config_from_state(state))
    if size is not None and SIZES[size.upper()] != (config.width, config.blocks):
        wanted = SIZES[size.upper()]
        raise CheckpointError(f"{path}: holds NAFSSR-{config.size_name} (width {config.width}, "
                              f"{config.blocks} blocks) but NAFSSR-{size.upper()} (width "
                              f"{wanted[0]}, {wanted[1]} blocks) was requested")
    return NAFSSR.from_config(config)


__all__ = ["NAFSSR", "NAFSSRConfig", "SCAM", "NAFBlock", "SIZES", "local_average",
           "drop_path_factors", "training_objective", "official_to_ours", "translate_official",
           "is_nafssr", "is_official", "config_from_state", "from_state", "ARCHITECTURE"]
