"""PASSRnet (Wang et al., "Learning Parallax Attention for Stereo Image Super-Resolution",
CVPR 2019), as the official code behaves in evaluation (``is_training=0``) and trains
(``is_training=1``: ``forward(..., return_attention=True)`` and ``training_objective``).

Feature extraction (conv, residual blocks and residual atrous-spatial-pyramid blocks) on each view,
the parallax attention module (PAM) that warps right features onto the left view along rows and
hands a valid mask to the fusion, then residual blocks and a sub-pixel upsampler. There is no
global bicubic residual. Shapes: views (B, 3, H, W) in [0, 1] -> SR (B, 3, sH, sW).

The official network super-resolves the left view only. ``forward`` returns the right view too,
from the mirrored pair: both views flipped horizontally and swapped, so that the right view is the
left view of a valid stereo pair; its SR is flipped back.

Valid mask (official): a left pixel is valid when the attention it receives from the right view,
sum_i M_L->R[i, j], exceeds 0.1; then scikit-image morphology on the (B, 1, H, W) array of
invalid pixels: objects under 20 pixels removed and holes under 10 filled, both with
connectivity 2 *over the 4-D array* (so the pairs of one batch touch each other), then a binary
closing with a radius-3 disk on each image, zero-padded by 3. Here SciPy does the same labelling
(``scipy.ndimage``; scikit-image's own arguments are deprecated since 0.26 and their meaning is
kept exactly). ``ipassr`` runs PASSRnet one pair at a time, so a result never depends on its batch.

Parameter names are the official ones (``init_feature.3.conv2_1.0.weight``...), so official
checkpoints load as they are.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import IpassrError
from .bipam import AttentionMaps
from .losses import photometric_loss, smoothness_loss
from .training import PIXEL_LOSSES, TrainingObjective
from .names import is_passrnet
from .morphology import (CLOSING_RADIUS, SMALL_HOLE, SMALL_OBJECT, disk,  # shared with the graph
                         scripted_cleaner)

ARCHITECTURE = "passrnet"
LEAKY_SLOPE = 0.1
VALID_THRESHOLD = 0.1
DEFAULT_ATTENTION_MEMORY = 32 * 2 ** 20


@dataclass(frozen=True)
class PASSRnetConfig:
    scale: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


def _leaky() -> nn.LeakyReLU:
    return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)


class ResidualBlock(nn.Module):
    """conv 3x3, LeakyReLU, conv 3x3 (no biases), plus input (the official ResB)."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), _leaky(),
                                  nn.Conv2d(channels, channels, 3, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _atrous(channels: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, 1, dilation, dilation, bias=False),
                         _leaky())


class ResidualASPPBlock(nn.Module):
    """Three cascaded atrous pyramids (dilations 1, 4, 8, each fused by a 1x1 conv); the input
    plus all three pyramid outputs (the official ResASPPB)."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        for stage in (1, 2, 3):
            for branch, dilation in zip((1, 2, 3), (1, 4, 8)):
                setattr(self, f"conv{branch}_{stage}", _atrous(channels, dilation))
            setattr(self, f"b_{stage}", nn.Conv2d(3 * channels, channels, 1, 1, 0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, current = x, x
        for stage in (1, 2, 3):
            branches = [getattr(self, f"conv{b}_{stage}")(current) for b in (1, 2, 3)]
            current = getattr(self, f"b_{stage}")(torch.cat(branches, dim=1))
            out = out + current
        return out


def clean_valid_mask(valid: torch.Tensor) -> torch.Tensor:
    """The official morphology on a bool (B, 1, H, W) valid mask -> float (B, 1, H, W)."""
    try:
        from scipy import ndimage
    except ImportError as exc:
        raise IpassrError("PASSRnet's valid mask needs SciPy: pip install scipy") from exc
    invalid = ~valid.cpu().numpy().astype(bool)
    structure = ndimage.generate_binary_structure(invalid.ndim, 2)

    def drop_small(mask: np.ndarray, minimum: int) -> np.ndarray:
        labels, _ = ndimage.label(mask, structure=structure)
        sizes = np.bincount(labels.ravel())
        return mask & ~(sizes < minimum)[labels]  # label 0 is outside the mask anyway

    invalid = drop_small(invalid, SMALL_OBJECT)  # remove_small_objects(invalid, 20, 2)
    invalid = ~drop_small(~invalid, SMALL_HOLE)  # remove_small_holes(invalid, 10, 2)
    radius, closing_disk = CLOSING_RADIUS, disk(CLOSING_RADIUS).numpy()
    for index in range(invalid.shape[0]):
        padded = np.pad(invalid[index, 0], radius)
        closed = ndimage.binary_erosion(ndimage.binary_dilation(padded, closing_disk),
                                        closing_disk, border_value=1)
        invalid[index, 0] = closed[radius:-radius, radius:-radius]
    return torch.from_numpy((~invalid).astype(np.float32)).to(valid.device)


class ParallaxAttention(nn.Module):
    """PAM: M_R->L = softmax(b1(rb(x_l)) . b2(rb(x_r))) per row; the right view's b3 features
    warped onto the left, fused with the left features and the valid mask by a 1x1 conv."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(channels, channels, 1, 1, 0, bias=True)
        self.b2 = nn.Conv2d(channels, channels, 1, 1, 0, bias=True)
        self.b3 = nn.Conv2d(channels, channels, 1, 1, 0, bias=True)
        self.rb = ResidualBlock(channels)
        self.fusion = nn.Conv2d(2 * channels + 1, channels, 1, 1, 0, bias=True)
        self.attention_memory: int | None = DEFAULT_ATTENTION_MEMORY

    def embeddings(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Row-major (B, H, W, C) queries and keys of both views: b1(rb(x)) and b2(rb(x))."""
        buffer_left, buffer_right = self.rb(left), self.rb(right)
        rows = (lambda t: t.permute(0, 2, 3, 1))  # noqa: E731
        return (rows(self.b1(buffer_left)), rows(self.b2(buffer_right)),
                rows(self.b1(buffer_right)), rows(self.b2(buffer_left)))

    @staticmethod
    def attention(embeddings: tuple[torch.Tensor, ...], rows: slice
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """M_R->L (B, r, W_left, W_right) and M_L->R (B, r, W_right, W_left) of some rows."""
        query_left, key_right, query_right, key_left = (e[:, rows] for e in embeddings)
        right_to_left = torch.softmax(torch.matmul(query_left, key_right.transpose(-1, -2)), -1)
        left_to_right = torch.softmax(torch.matmul(query_right, key_left.transpose(-1, -2)), -1)
        return right_to_left, left_to_right

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused left features (B, C, H, W) and the valid mask V_L (B, 1, H, W)."""
        batch, channels, height, width = left.shape
        embeddings = self.embeddings(left, right)
        values = self.b3(right).permute(0, 2, 3, 1)  # (B, H, W, C)
        if self.attention_memory is None:  # whole maps, no in-place writes (exports)
            right_to_left, left_to_right = self.attention(embeddings, slice(None))
            warped = torch.matmul(right_to_left, values)
            received = left_to_right.sum(dim=-2)[:, None]  # what each left pixel receives
        else:
            per_row = 4 * batch * width * width * left.element_size()
            step = max(1, min(height, self.attention_memory // max(per_row, 1)))
            warped = torch.empty_like(values)
            received = left.new_empty(batch, 1, height, width)
            for start in range(0, height, step):
                rows = slice(start, min(height, start + step))
                right_to_left, left_to_right = self.attention(embeddings, rows)
                warped[:, rows] = torch.matmul(right_to_left, values[:, rows])
                received[:, 0, rows] = left_to_right.sum(dim=-2)
        # an exported graph cannot call SciPy: it records the same morphology in tensor ops
        clean = scripted_cleaner() if torch.jit.is_tracing() else clean_valid_mask
        valid = clean(received > VALID_THRESHOLD).to(left.dtype)
        fused = self.fusion(torch.cat((warped.permute(0, 3, 1, 2), left, valid), dim=1))
        return fused, valid


    def training_forward(self, left: torch.Tensor, right: torch.Tensor
                         ) -> tuple[torch.Tensor, AttentionMaps]:
        """The official training pass (``is_training=1``): the fused left features and the
        whole maps M_R->L (B, H, W_left, W_right), M_L->R with the valid masks V_L, V_R of both
        views (B, 1, H, W), cleaned over the batch as the official training does."""
        right_to_left, left_to_right = self.attention(self.embeddings(left, right), slice(None))
        valid_left = clean_valid_mask(left_to_right.detach().sum(dim=-2)[:, None] > VALID_THRESHOLD)
        valid_right = clean_valid_mask(right_to_left.detach().sum(dim=-2)[:, None] > VALID_THRESHOLD)
        warped = torch.matmul(right_to_left, self.b3(right).permute(0, 2, 3, 1))
        fused = self.fusion(torch.cat((warped.permute(0, 3, 1, 2), left,
                                       valid_left.to(left.dtype)), dim=1))
        return fused, AttentionMaps(right_to_left, left_to_right, valid_left, valid_right)


class PASSRnet(nn.Module):
    """PASSRnet; ``forward(left, right) -> (sr_left, sr_right)``, ``super_resolve_left`` is the
    official evaluation (left view only)."""

    architecture = ARCHITECTURE

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        self.config = PASSRnetConfig(scale)
        self.init_feature = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), _leaky(), ResidualBlock(), ResidualASPPBlock(),
            ResidualBlock(), ResidualASPPBlock(), ResidualBlock())
        self.pam = ParallaxAttention(64)
        self.upscale = nn.Sequential(
            ResidualBlock(), ResidualBlock(), ResidualBlock(), ResidualBlock(),
            nn.Conv2d(64, 64 * scale ** 2, 1, 1, 0, bias=False), nn.PixelShuffle(scale),
            nn.Conv2d(64, 3, 3, 1, 1, bias=False), nn.Conv2d(3, 3, 3, 1, 1, bias=False))
        self.eval()

    @classmethod
    def from_config(cls, config: PASSRnetConfig) -> "PASSRnet":
        return cls(config.scale)

    @property
    def scale(self) -> int:
        return self.config.scale

    def set_attention_memory(self, budget: int | None) -> None:
        """Bytes of PAM maps computed at once (rows are chunked to fit; same result); None: the
        whole maps in one expression, as exported graphs need (no loop over rows)."""
        self.pam.attention_memory = None if budget is None else max(1, int(budget))

    def super_resolve_left(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """The official evaluation: the SR left view (B, 3, sH, sW)."""
        fused, _ = self.pam(self.init_feature(left), self.init_feature(right))
        return self.upscale(fused)

    def valid_mask(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """The left view's valid mask (B, 1, H, W) that the fusion receives."""
        return self.pam(self.init_feature(left), self.init_feature(right))[1]

    def forward(self, left: torch.Tensor, right: torch.Tensor, return_attention: bool = False):
        """(sr_left, sr_right); ``return_attention``: the official training pass instead,
        (sr_left, None, AttentionMaps): the left view alone, as the official network trains."""
        if left.shape != right.shape:
            raise ValueError(f"left {tuple(left.shape)} and right {tuple(right.shape)} differ")
        if return_attention:
            fused, maps = self.pam.training_forward(self.init_feature(left), self.init_feature(right))
            return self.upscale(fused), None, maps
        sr_left = self.super_resolve_left(left, right)
        mirrored = self.super_resolve_left(right.flip(-1), left.flip(-1))
        return sr_left, mirrored.flip(-1)

    def attention_row(self, left: torch.Tensor, right: torch.Tensor, row: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """PAM's maps of one row: M_R->L (B, W, W) and M_L->R (B, W, W)."""
        embeddings = self.pam.embeddings(self.init_feature(left), self.init_feature(right))
        right_to_left, left_to_right = self.pam.attention(embeddings, slice(row, row + 1))
        return right_to_left[:, 0], left_to_right[:, 0]


def cycle_loss(maps: AttentionMaps) -> torch.Tensor:
    """The official L_cycle: each round-trip map M_R->L M_L->R (and M_L->R M_R->L) against the
    identity, on the columns the valid mask of the view trusts."""
    identity = torch.eye(maps.right_to_left.shape[-1], device=maps.right_to_left.device,
                         dtype=maps.right_to_left.dtype)
    loss = 0
    for forward, backward, valid in ((maps.right_to_left, maps.left_to_right, maps.valid_left),
                                     (maps.left_to_right, maps.right_to_left, maps.valid_right)):
        valid = valid.permute(0, 2, 1, 3)  # (B, H, 1, W)
        loss = loss + F.l1_loss(torch.matmul(forward, backward) * valid, identity * valid)
    return loss


def training_objective(config: Any) -> TrainingObjective:
    """The official ``train.py`` step: L_SR of the left view (the recipe's MSE, ``config.loss``)
    plus ``config.loss_weight`` (0.005) times L_photo (on the LR views) + L_smooth + L_cycle;
    each term can be switched off (``loss_sr``, ``loss_photo``, ...); Xavier-normal convolution
    weights, as its ``weights_init_xavier``."""

    def forward(model: nn.Module, inputs: tuple[torch.Tensor, ...], step: int):
        return model(inputs[0], inputs[1], return_attention=True)

    def loss(outputs: Any, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        sr_left, _, maps = outputs
        lr_left, lr_right, hr_left = inputs[:3]
        terms = {}
        if config.loss_sr:
            terms["sr"] = PIXEL_LOSSES[config.loss](sr_left, hr_left)
        if config.loss_photo:
            terms["photo"] = photometric_loss(lr_left, lr_right, maps)
        if config.loss_smooth:
            terms["smooth"] = smoothness_loss(maps)
        if config.loss_cycle:
            terms["cycle"] = cycle_loss(maps)
        stereo = [terms[k] for k in ("photo", "smooth", "cycle") if k in terms]
        total = terms.get("sr", sr_left.new_zeros(()))
        if stereo:
            total = total + config.loss_weight * sum(stereo[1:], stereo[0])
        terms["total"] = total
        return terms

    return TrainingObjective(forward, loss, initialise=xavier_normal_convolutions, options=frozenset(
        {"loss", "loss_weight", "loss_sr", "loss_photo", "loss_smooth", "loss_cycle"}))


def xavier_normal_convolutions(network: nn.Module) -> None:
    """Xavier-normal weights for every convolution (biases as built), as the official training."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.xavier_normal_(module.weight)


def config_from_state(state: Mapping[str, torch.Tensor]) -> PASSRnetConfig:
    channels = state["upscale.4.weight"].shape[0]
    scale = round((channels / 64) ** 0.5)
    if 64 * scale ** 2 != channels:
        raise ValueError(f"upsampler of {channels} channels fits no scale")
    return PASSRnetConfig(scale)


def from_state(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
               path: Any = "weights", scale: int | None = None, size: str | None = None
               ) -> PASSRnet:
    """The PASSRnet network (unloaded) that the metadata or tensors describe."""
    config = (PASSRnetConfig(**json.loads(metadata["model_config"])) if "model_config" in metadata
              else config_from_state(state))
    return PASSRnet.from_config(config)


__all__ = ["PASSRnet", "PASSRnetConfig", "ParallaxAttention", "clean_valid_mask", "is_passrnet",
           "training_objective", "cycle_loss", "config_from_state", "from_state", "ARCHITECTURE"]
