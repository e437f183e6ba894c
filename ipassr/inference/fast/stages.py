"""The network's stages run fast (eval mode, no autograd): no concatenation is ever built, since a
convolution of concatenated pieces is the sum of the pieces' convolutions, accumulated in place
with the activations and residuals inside the convolutions (``ipassr.inference.fast.fusion``)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...models.bipam import LEAKY_SLOPE, BiPAM
from ...models.ipassr import ChannelAttention, ResidualDenseBlock, ResidualDenseGroup
from .fusion import conv, conv_accumulate_, conv_plus


def empty_channels_last(x: torch.Tensor, channels: int, height: int | None = None,
                       width: int | None = None) -> torch.Tensor:
    """A channels_last (N, channels, H, W) buffer on x's device and dtype (H, W: x's default)."""
    n, _, h, w = x.shape
    return torch.empty(n, channels, h if height is None else height, w if width is None else width,
                       dtype=x.dtype, device=x.device, memory_format=torch.channels_last)


def as_dense(x: torch.Tensor) -> torch.Tensor:
    """x as a dense channels_last tensor (a copy only if it is a strided view, e.g. a band)."""
    return x.contiguous(memory_format=torch.channels_last)


def conv_of_concat(pieces: Sequence[torch.Tensor], weight: torch.Tensor,
                   bias: torch.Tensor | None, padding: int = 0, plus: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """``conv2d(cat(pieces, dim=1), weight, bias) (+ plus)`` without the concatenation.

    Each piece is convolved with its slice of ``weight`` and accumulated in place into the
    output (``ipassr.inference.fast.fusion``), so the concatenation never exists: no buffer, no copies into
    it, no channel-slice copies for the convolutions. Same FLOPs; equal to float32 rounding.
    """
    first = weight[:, :pieces[0].shape[1]]
    out = (conv(pieces[0], first, bias, padding) if plus is None
           else conv_plus(pieces[0], plus, first, bias, padding))
    return _accumulate(out, pieces[1:], weight, pieces[0].shape[1], padding)


def _accumulate(out: torch.Tensor, pieces: Sequence[torch.Tensor], weight: torch.Tensor,
                start: int, padding: int) -> torch.Tensor:
    """out += the convolutions of ``pieces`` with the slices of ``weight`` from input ``start``."""
    for piece in pieces:
        stop = start + piece.shape[1]
        conv_accumulate_(out, piece, weight[:, start:stop], padding)
        start = stop
    return out


def dense_block(block: ResidualDenseBlock, x: torch.Tensor) -> torch.Tensor:
    """RDB forward, (N, G0, H, W) -> same, without building the concatenations.

    Layer k convolves [x, g_1, .., g_k-1] as the sum of its pieces' convolutions. The input's
    share of every layer is one convolution (wide convolutions run faster than four narrow
    ones); each later piece is accumulated in place into the layers after it. The 1x1 local
    fusion likewise (``conv_of_concat``), with the residual x added inside its first
    convolution. Equal to the module to float32 rounding.
    """
    x = as_dense(x)
    channels, layers = x.shape[1], block.layers
    growth = layers[0].conv.out_channels
    shares = conv(x, torch.cat([layer.conv.weight[:, :channels] for layer in layers]),
                  torch.cat([layer.conv.bias for layer in layers]), 1)  # (N, layers * G, H, W)
    pieces = [x]
    for k, layer in enumerate(layers):
        share = shares[:, k * growth:(k + 1) * growth]
        if k == 0:
            grown = as_dense(F.leaky_relu(share, LEAKY_SLOPE))
        else:
            grown = F.leaky_relu_(_accumulate(as_dense(share), pieces[1:], layer.conv.weight,
                                              channels, 1), LEAKY_SLOPE)
        pieces.append(grown)
    del shares
    return conv_of_concat(pieces, block.fuse.weight, block.fuse.bias, plus=x)


def dense_group(group: ResidualDenseGroup, x: torch.Tensor, keep_outputs: bool = False
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """RDG forward: the fused output (N, 64, H, W) and, with ``keep_outputs``, the hierarchy.

    The hierarchy is returned as its pieces, the RDB outputs (4 x (N, 64, H, W)): the 1x1
    group fusion accumulates each block's share as soon as the block is done, so without
    ``keep_outputs`` only one block output is alive at a time.
    """
    fused, outputs = None, []
    channels = x.shape[1]
    for i, block in enumerate(group.blocks):
        x = dense_block(block, x)
        weight = group.fuse.weight[:, i * channels:(i + 1) * channels]
        fused = (conv(x, weight, group.fuse.bias) if fused is None
                 else conv_accumulate_(fused, x, weight))
        if keep_outputs:
            outputs.append(x)
    return fused, outputs


def extract(network: nn.Module, views: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Feature extraction of a stack of views: features (N, 64, H, W) and the hierarchy as its
    pieces, the RDB outputs (4 x (N, 64, H, W)): biPAM's grouped layers use each piece alone."""
    first = network.feature_conv
    features = conv(as_dense(views), first.weight, first.bias, first.padding[0])
    return dense_group(network.feature_group, features, keep_outputs=True)


def _group_width(bipam: BiPAM, pieces: Sequence[torch.Tensor]) -> int:
    """Channels per group of biPAM's grouped layers, which must be one hierarchy piece each."""
    groups = bipam.transition.conv1.groups
    width = bipam.norm.num_features // groups
    if len(pieces) != groups or any(piece.shape[1] != width for piece in pieces):
        raise ValueError(f"biPAM's {groups} groups of {width} channels do not match the "
                         f"hierarchy pieces {[piece.shape[1] for piece in pieces]}")
    return width


def normalize(bipam: BiPAM, pieces: Sequence[torch.Tensor],
              stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[torch.Tensor]:
    """biPAM's eval-mode BatchNorm of hierarchy pieces: each view by its own statistics (given
    as (N, 256) mean and 1/std, or of the pieces themselves). BatchNorm is per channel, so
    each piece is normalised alone, with its channels' slice of the parameters."""
    norm, width = bipam.norm, _group_width(bipam, pieces)
    normalized = []
    for g, piece in enumerate(pieces):
        channels = slice(g * width, (g + 1) * width)
        weight, bias = norm.weight[channels], norm.bias[channels]
        if stats is None:
            # the batch statistics of a batch of one view are its own statistics; unlike
            # F.instance_norm this keeps channels_last, and it is faster than torch.var_mean
            # (bench/README.md)
            views = [F.batch_norm(view[None], None, None, weight, bias, True, 0.0, norm.eps)
                     for view in piece]
            normalized.append(views[0] if len(views) == 1 else torch.cat(views))
        else:
            mean, invstd = (stat[:, channels] for stat in stats)  # (N, width) each
            scale = (invstd * weight).to(piece.dtype)
            shift = (bias - mean * invstd * weight).to(piece.dtype)
            normalized.append(torch.addcmul(shift[:, :, None, None], piece,
                                            scale[:, :, None, None]))
    return normalized


def embed(bipam: BiPAM, normalized: Sequence[torch.Tensor], projection: nn.Conv2d,
          rows: slice | None = None) -> torch.Tensor:
    """Transition block and 1x1 projection of normalised hierarchy pieces -> query or key
    (N, 64, h, W). The layers are grouped, one group per piece, so each group runs as a plain
    convolution on its piece with its slice of the weights: no 256-channel concatenation,
    and oneDNN's dense convolutions are faster than its grouped ones (docs/design.md)."""
    conv1, conv2 = bipam.transition.conv1, bipam.transition.conv2
    width = _group_width(bipam, normalized)
    out = projection.out_channels // projection.groups
    embedded = []
    for g, piece in enumerate(normalized):
        channels, outputs = slice(g * width, (g + 1) * width), slice(g * out, (g + 1) * out)
        hidden = conv(piece, conv1.weight[channels], conv1.bias[channels], 1, slope=LEAKY_SLOPE)
        hidden = conv_plus(hidden, piece, conv2.weight[channels], conv2.bias[channels], 1)
        if rows is not None:
            hidden = as_dense(hidden[:, :, rows])
        embedded.append(conv(hidden, projection.weight[outputs], projection.bias[outputs]))
    return bipam.whiten(torch.cat(embedded, dim=1))


def query_and_key(bipam: BiPAM, hierarchy: Sequence[torch.Tensor], batch: int,
                  stats: tuple[torch.Tensor, torch.Tensor] | None = None,
                  rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """biPAM's whitened query (of the left views) and key (of the right views), (B, 64, h, W),
    from the hierarchy pieces of a stack of 2B views, left views first; ``stats``: the views'
    (2B, 256) mean and 1/std, if not their own; ``rows``: the rows to keep, if not all."""
    def embedded(views: slice, projection: nn.Conv2d) -> torch.Tensor:
        own = None if stats is None else tuple(stat[views] for stat in stats)
        return embed(bipam, normalize(bipam, [p[views] for p in hierarchy], own), projection, rows)

    return embedded(slice(0, batch), bipam.query), embedded(slice(batch, None), bipam.key)


def channel_weights(attention: ChannelAttention, pooled: torch.Tensor) -> torch.Tensor:
    """Channel-attention weights (N, C, 1, 1) from the global average pool (N, C, 1, 1)."""
    hidden = F.leaky_relu(attention.squeeze(pooled), LEAKY_SLOPE)
    return torch.sigmoid(attention.excite(hidden))


__all__ = ["empty_channels_last", "as_dense", "conv_of_concat", "dense_block", "dense_group",
           "extract", "normalize", "embed", "query_and_key", "channel_weights"]
