"""Fast, memory-bounded inference for any image size, equal to ``IPASSR.forward`` in eval mode.

``stereo_forward(network, left, right, max_memory=...)`` runs the network's own modules in a
faster and leaner way than the training-oriented ``forward``:

* channels_last activations, no autograd (``torch.inference_mode``), in-place activations;
* no concatenation is built for a convolution: a convolution of concatenated pieces (the dense
  blocks' layers and local fusions, the group fusion) is the sum of the pieces' convolutions,
  accumulated in place; on the CPU activations, residuals and accumulations run inside the
  convolutions (``ipassr.fused``);
* the biPAM attention is computed a chunk of rows at a time (``ipassr.chunked``), so the
  (H, W, W) maps never exist at once;
* the upsampler runs in bands of rows, so its s^2-times-wider activations stay small.

When even the H x W activations do not fit ``max_memory`` the image is processed in horizontal
bands with enough overlap (halo) for the receptive field of each stage. The two statistics that
span the whole image are gathered in extra passes so tiling stays exact: biPAM's per-image
BatchNorm statistics (pass 1) and the channel attention's global average pool (pass 3).

Shapes: views (B, 3, H, W) in [0, 1] -> SR views (B, 3, sH, sW). Eval-mode semantics only: each
view is normalised by its own statistics, as in the published evaluation (SPEC.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import LEAKY_SLOPE, BiPAM
from .chunked import (DEFAULT_ATTENTION_MEMORY, PER_PIXEL_DETAILS, RowAttention,
                      attention_row_bytes, chunked_parallax_fusion, subnormals_flushed)
from .errors import IpassrError
from .fused import conv, conv_accumulate_, conv_plus
from .model import IPASSR, ChannelAttention, ResidualDenseBlock, ResidualDenseGroup, Upsampler
from .sizes import FLOAT_BYTES, format_bytes

DEFAULT_MAX_MEMORY = 4 * 2 ** 30  # bytes of activations one forward pass may use (CPU)
CUDA_MEMORY_FRACTION = 0.5  # on a GPU the default budget is this share of its available memory
# Cap on one attention chunk's maps on a GPU, where every chunk costs ~20 kernel launches: at
# LR 1920x1080 (bf16, H100) 4 GiB chunks (72 rows) took 0.66 s a pair, 128 MiB ones 2.21 s.
CUDA_ATTENTION_MEMORY = 4 * 2 ** 30
MIN_BAND_ROWS = 8
UPSAMPLE_BAND_BYTES = 64 * 2 ** 20  # the upsampler's s^2-wide activations, per band
# Peak live activation channels per LR pixel of each view (measured from the code below, rounded
# up): untiled forward, and one band of the tiled forward (per row of band plus halo).
UNTILED_CHANNELS = 800
BAND_CHANNELS = 900
STORED_CHANNELS_TILED = 128  # the fusion input/output buffer kept for the whole image


@dataclass(frozen=True)
class InferencePlan:
    """How one forward pass will run: whole image or bands, and the attention chunk height."""

    tiled: bool
    band_rows: int  # LR rows per band (H when untiled)
    attention_rows: int  # image rows per attention chunk
    estimated_bytes: int  # predicted peak activation memory


def receptive_radius(module: nn.Module) -> int:
    """Rows of context a chain of convolutions needs on each side (sum of kernel half-widths)."""
    return sum((m.kernel_size[0] // 2) * m.dilation[0] for m in module.modules()
               if isinstance(m, nn.Conv2d))


def stage_halos(network: IPASSR) -> dict[str, int]:
    """LR-row halo each tiled pass needs so that its band's central rows are exact."""
    extract = receptive_radius(network.feature_conv) + receptive_radius(network.feature_group)
    transition = receptive_radius(network.attention.transition) if network.attention else 0
    # the upsampler's HR 3x3 conv needs under one LR row; the bicubic residual needs two
    upsample = max(-(-receptive_radius(network.upsampler) // network.scale), 2)
    return {"extract": extract, "embed": extract + transition,
            "fusion": receptive_radius(network.fusion.dense),
            "reconstruct": receptive_radius(network.reconstruction_group) + upsample}


def memory_budget(max_memory: int | None, device: torch.device) -> int:
    """The activation budget of a pass: ``max_memory`` if given, else the device's default."""
    return default_max_memory(device) if max_memory is None else int(max_memory)


def default_max_memory(device: torch.device) -> int:
    """The activation budget when none is given: 4 GiB on the CPU; on a GPU half of what it has
    available (free memory plus what PyTorch's allocator holds unused), so that a large image
    runs untiled there (1080p x2 on an H100: 2.2 s tiled in 4 GiB bands, 0.66 s untiled)."""
    if device.type != "cuda":
        return DEFAULT_MAX_MEMORY
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int((free + cached) * CUDA_MEMORY_FRACTION)


PLAIN_MAPS = 12  # live (H, W, W) float32 maps at the plain forward's peak (its biPAM, measured)


def plain_forward_bytes(network: IPASSR, batch: int, height: int, width: int) -> int:
    """Rough peak activation bytes of ``IPASSR.forward``, which builds the full (H, W, W)
    attention maps (KITTI x2: 4.2 GB predicted, 4.16 GiB measured on a GPU)."""
    maps = PLAIN_MAPS * batch * height * width * width * FLOAT_BYTES if network.attention else 0
    return maps + _untiled_bytes(network, batch, height, width)


def _output_bytes(network: IPASSR, batch: int, height: int, width: int) -> int:
    """The SR output of both views of a batch (float32)."""
    return 2 * batch * 3 * network.scale ** 2 * height * width * FLOAT_BYTES


def _untiled_bytes(network: IPASSR, batch: int, height: int, width: int) -> int:
    """Peak activations of the untiled fast pass, attention chunk aside, output included."""
    return (UNTILED_CHANNELS * 2 * batch * height * width * FLOAT_BYTES
            + _output_bytes(network, batch, height, width))


def attention_chunk_cap(device: torch.device) -> int:
    """Most bytes of attention maps one chunk of rows may use: larger chunks are slower on
    the CPU (32 MiB), but on a GPU they save kernel launches (4 GiB)."""
    return CUDA_ATTENTION_MEMORY if device.type == "cuda" else DEFAULT_ATTENTION_MEMORY


def plan_inference(network: IPASSR, batch: int, height: int, width: int,
                   max_memory: int | None = None,
                   device: torch.device | None = None) -> InferencePlan:
    """Choose untiled or tiled execution and chunk sizes so the pass fits ``max_memory`` bytes.

    ``device`` (default: the network's) sets the default budget and the attention chunk cap.
    """
    device = next(network.parameters()).device if device is None else torch.device(device)
    budget = memory_budget(max_memory, device)
    cap = attention_chunk_cap(device)
    views = 2 * batch
    row_attention = attention_row_bytes(batch, width) if network.attention is not None else 0
    output = _output_bytes(network, batch, height, width)
    untiled = _untiled_bytes(network, batch, height, width)
    if untiled + row_attention <= budget:
        rows = _attention_rows(batch, height, width, budget - untiled, cap)
        return InferencePlan(False, height, rows, untiled + rows * row_attention)
    halo = max(stage_halos(network).values())
    stored = STORED_CHANNELS_TILED * views * height * width * FLOAT_BYTES + output
    per_band_row = BAND_CHANNELS * views * width * FLOAT_BYTES
    minimum = min(stored + row_attention + per_band_row * (MIN_BAND_ROWS + 2 * halo),
                  untiled + row_attention)  # small images need less untiled than tiled
    if budget < minimum:
        raise IpassrError(_too_large_message(budget, minimum, batch, height, width, views,
                                             row_attention, per_band_row, halo, network.scale))
    spare = budget - stored - row_attention
    band = min(height, spare // per_band_row - 2 * halo)
    attention_budget = budget - stored - per_band_row * (band + 2 * halo)
    rows = _attention_rows(batch, band, width, attention_budget, cap)
    return InferencePlan(True, int(band), rows,
                         stored + per_band_row * (band + 2 * halo) + rows * row_attention)


def _attention_rows(batch: int, height: int, width: int, budget: int, cap: int) -> int:
    """Attention chunk height: what the budget allows, at most ``cap`` bytes (one row at least)."""
    row = attention_row_bytes(batch, width)
    return int(max(1, min(height, min(budget, max(cap, row)) // row)))


def _too_large_message(budget: int, minimum: int, batch: int, height: int, width: int,
                       views: int, row_attention: int, per_band_row: int, halo: int,
                       scale: int) -> str:
    """Explain that a pair does not fit even tiled, and what would."""
    per_image_row = (STORED_CHANNELS_TILED + 3 * scale ** 2) * views * width * FLOAT_BYTES
    fixed = row_attention + per_band_row * (MIN_BAND_ROWS + 2 * halo)
    fits = max(0, (budget - fixed) // per_image_row)
    hint = (f"this budget holds images of width {width} up to about {fits} rows high"
            if fits >= MIN_BAND_ROWS else
            f"not even one band of {MIN_BAND_ROWS} rows fits at width {width}")
    return (f"a {width}x{height} pair (batch {batch}) needs at least {format_bytes(minimum)} "
            f"even when tiled, but the memory budget is {format_bytes(budget)} ({hint}); "
            "raise --max-memory or use smaller images")


# -- the network's stages, run fast (eval mode, no autograd) --------------------------------------

def _empty_like_layout(x: torch.Tensor, channels: int, height: int | None = None,
                       width: int | None = None) -> torch.Tensor:
    """A channels_last (N, channels, H, W) buffer on x's device and dtype (H, W: x's default)."""
    n, _, h, w = x.shape
    return torch.empty(n, channels, h if height is None else height, w if width is None else width,
                       dtype=x.dtype, device=x.device, memory_format=torch.channels_last)


def _dense(x: torch.Tensor) -> torch.Tensor:
    """x as a dense channels_last tensor (a copy only if it is a strided view, e.g. a band)."""
    return x.contiguous(memory_format=torch.channels_last)


def conv_of_concat(pieces: Sequence[torch.Tensor], weight: torch.Tensor,
                   bias: torch.Tensor | None, padding: int = 0, plus: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """``conv2d(cat(pieces, dim=1), weight, bias) (+ plus)`` without the concatenation.

    Each piece is convolved with its slice of ``weight`` and accumulated in place into the
    output (``ipassr.fused``), so the concatenation never exists: no buffer, no copies into
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
    x = _dense(x)
    channels, layers = x.shape[1], block.layers
    growth = layers[0].conv.out_channels
    shares = conv(x, torch.cat([layer.conv.weight[:, :channels] for layer in layers]),
                  torch.cat([layer.conv.bias for layer in layers]), 1)  # (N, layers * G, H, W)
    pieces = [x]
    for k, layer in enumerate(layers):
        share = shares[:, k * growth:(k + 1) * growth]
        if k == 0:
            grown = _dense(F.leaky_relu(share, LEAKY_SLOPE))
        else:
            grown = F.leaky_relu_(_accumulate(_dense(share), pieces[1:], layer.conv.weight,
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


def extract(network: IPASSR, views: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Feature extraction of a stack of views: features (N, 64, H, W) and the hierarchy as its
    pieces, the RDB outputs (4 x (N, 64, H, W)): biPAM's grouped layers use each piece alone."""
    first = network.feature_conv
    features = conv(_dense(views), first.weight, first.bias, first.padding[0])
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
            # F.instance_norm this keeps channels_last, and it is 3x faster than torch.var_mean
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
            hidden = _dense(hidden[:, :, rows])
        embedded.append(conv(hidden, projection.weight[outputs], projection.bias[outputs]))
    embedded = torch.cat(embedded, dim=1)
    if bipam.use_whitening:
        embedded = embedded - embedded.mean(dim=3, keepdim=True)
    return embedded


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
        band = _dense(features[:, :, lo:hi])
        ones = _dense(band.new_ones(band.shape[0], 1, hi - lo, band.shape[3]))
        hr = F.pixel_shuffle(conv_plus(band, conv(ones, ones_weight, bias, 1), weight, None, 1),
                             scale)
        # bicubic of 3 channels runs 1.7x faster on NCHW input (identical values)
        residual = F.interpolate(views[:, :, lo:hi].contiguous(), scale_factor=scale,
                                 mode="bicubic", align_corners=False)
        keep = slice((start - lo) * scale, (stop - lo) * scale)
        torch.add(hr[:, :, keep], residual[:, :, keep],
                  out=out[:, :, (start - first) * scale:(stop - first) * scale])


def _row_bands(height: int, band: int) -> list[tuple[int, int]]:
    return [(start, min(height, start + band)) for start in range(0, height, band)]


def _with_halo(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, start: int,
               stop: int, halo: int) -> torch.Tensor:
    """fn applied to rows start:stop of x plus ``halo`` rows each side; the rows start:stop back."""
    lo, hi = max(0, start - halo), min(x.shape[2], stop + halo)
    return fn(x[:, :, lo:hi])[:, :, start - lo:stop - lo]


# -- whole passes -----------------------------------------------------------------------------------

def _prepare(network: IPASSR, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    if network.training:
        raise ValueError("stereo_forward implements eval-mode inference: call network.eval()")
    if left.shape != right.shape:
        raise IpassrError(f"left {tuple(left.shape)} and right {tuple(right.shape)} differ")
    if network.attention is not None and left.shape[2] * left.shape[3] < 2:
        raise IpassrError(f"a {left.shape[3]}x{left.shape[2]} pair is too small: biPAM normalises "
                          "each view by the mean and variance of its own pixels, which needs at "
                          "least 2 pixels")
    return torch.cat((left, right), dim=0).contiguous(memory_format=torch.channels_last)


def _exchange(network: IPASSR, query: torch.Tensor, key: torch.Tensor, fusion_input: torch.Tensor,
              rows: slice, attention_rows: int, details: RowAttention | None,
              keep_rows: Sequence[int] = ()) -> None:
    """biPAM on image rows ``rows``: fills fusion_input[:, 64:128, rows] from [:, :64, rows]."""
    channels = network.fusion.project.out_channels
    own = fusion_input[:, :channels, rows]
    converted = fusion_input[:, channels:2 * channels, rows]
    if network.attention is None:
        converted.copy_(own)
        return
    batch = query.shape[0]
    _, _, info = chunked_parallax_fusion(
        query, key, own[:batch], own[batch:], use_valid_mask=network.attention.use_valid_mask,
        rows=attention_rows, out_left=converted[:batch], out_right=converted[batch:],
        with_details=details is not None, keep_rows=[r - rows.start for r in keep_rows])
    if details is not None:
        for full, part in zip(details[:-1], info[:-1]):
            full[:, :, rows] = part
        details.rows.update({r + rows.start: maps for r, maps in info.rows.items()})


def _reconstruct_rows(network: IPASSR, fused: torch.Tensor, weights: torch.Tensor,
                      views: torch.Tensor, out: torch.Tensor, first: int, last: int,
                      in_place: bool = False) -> None:
    """Channel attention, projection, reconstruction RDG and upsampler for LR rows first:last.

    ``fused`` and ``views`` hold the same LR rows (a band with its halo, or the whole image);
    first:last index into them, and ``out`` receives the matching HR rows. ``in_place`` lets the
    channel attention overwrite ``fused`` (when nothing reads it afterwards).
    """
    scaled = fused.mul_(weights) if in_place else fused * weights
    features = network.fusion.project(scaled)
    del scaled
    features, _ = dense_group(network.reconstruction_group, features)
    upsample_rows(network.upsampler, network.scale, features, views, out, first=first, last=last)


def _new_details(views: torch.Tensor) -> RowAttention:
    batch = views.shape[0] // 2
    return RowAttention(*(views.new_empty(batch, 1, views.shape[2], views.shape[3])
                          for _ in range(PER_PIXEL_DETAILS)), {})


def _untiled(network: IPASSR, views: torch.Tensor, plan: InferencePlan,
             details: RowAttention | None, keep_rows: Sequence[int] = ()) -> torch.Tensor:
    """Whole-image forward: every stage at once, attention in chunks of rows."""
    batch, height = views.shape[0] // 2, views.shape[2]
    channels = network.fusion.project.out_channels
    features, hierarchy = extract(network, views)
    query = key = None
    if network.attention is not None:  # before the fusion buffer exists: lower peak memory
        query, key = query_and_key(network.attention, hierarchy, batch)
    del hierarchy
    fusion_buffer = _empty_like_layout(views, 2 * channels)
    fusion_buffer[:, :channels] = features
    del features
    _exchange(network, query, key, fusion_buffer, slice(0, height), plan.attention_rows, details,
              keep_rows)
    del query, key
    fused = dense_block(network.fusion.dense, fusion_buffer)
    del fusion_buffer
    weights = channel_weights(network.fusion.channel_attention,
                              fused.mean(dim=(2, 3), keepdim=True))
    out = _empty_like_layout(views, 3, network.scale * height, network.scale * views.shape[3])
    _reconstruct_rows(network, fused, weights, views, out, 0, height, in_place=True)
    return out


def _hierarchy_statistics(network: IPASSR, views: torch.Tensor, fusion_buffer: torch.Tensor,
                          plan: InferencePlan, halo: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pass 1: features into the fusion buffer; per-view mean and 1/std of the hierarchy (N, 256)."""
    channels = network.fusion.project.out_channels
    total = torch.zeros(views.shape[0], network.feature_group.fuse.in_channels,
                        dtype=torch.float64, device=views.device)
    squares = torch.zeros_like(total)
    for start, stop in _row_bands(views.shape[2], plan.band_rows):
        lo, hi = max(0, start - halo), min(views.shape[2], stop + halo)
        features, hierarchy = extract(network, views[:, :, lo:hi])
        core = slice(start - lo, stop - lo)
        fusion_buffer[:, :channels, start:stop] = features[:, :, core]
        sums = [(piece.sum(dim=(2, 3)), piece.square().sum(dim=(2, 3)))  # one piece at a time
                for piece in (p[:, :, core].double() for p in hierarchy)]
        total += torch.cat([piece_total for piece_total, _ in sums], dim=1)
        squares += torch.cat([piece_squares for _, piece_squares in sums], dim=1)
    count = views.shape[2] * views.shape[3]
    mean = total / count
    variance = (squares / count - mean.square()).clamp_min(0)
    return mean, torch.rsqrt(variance + network.attention.norm.eps)


def _tiled_attention(network: IPASSR, views: torch.Tensor, fusion_buffer: torch.Tensor,
                     stats: tuple[torch.Tensor, torch.Tensor], plan: InferencePlan, halo: int,
                     details: RowAttention | None, keep_rows: Sequence[int] = ()) -> None:
    """Pass 2: per band, recompute the hierarchy, embed with whole-image statistics, attend."""
    batch = views.shape[0] // 2
    for start, stop in _row_bands(views.shape[2], plan.band_rows):
        lo, hi = max(0, start - halo), min(views.shape[2], stop + halo)
        _, hierarchy = extract(network, views[:, :, lo:hi])
        core = slice(start - lo, stop - lo)
        query, key = query_and_key(network.attention, hierarchy, batch, stats, core)
        del hierarchy
        _exchange(network, query, key, fusion_buffer, slice(start, stop), plan.attention_rows,
                  details, [r for r in keep_rows if start <= r < stop])


def _tiled_fusion(network: IPASSR, fusion_buffer: torch.Tensor, plan: InferencePlan, halo: int
                  ) -> torch.Tensor:
    """Pass 3: fusion RDB band by band, written back in place; returns the global pool (N, C)."""
    height = fusion_buffer.shape[2]
    channels = network.fusion.dense.fuse.out_channels
    fused_input = fusion_buffer[:, :channels]
    total = torch.zeros(fusion_buffer.shape[0], channels, dtype=torch.float64,
                        device=fusion_buffer.device)
    pending = None  # a band's output is written once the next band has read its halo rows
    for start, stop in _row_bands(height, plan.band_rows):
        fused = _with_halo(lambda x: dense_block(network.fusion.dense, x), fused_input, start,
                           stop, halo)
        total += fused.double().sum(dim=(2, 3))
        if pending is not None:
            fused_input[:, :, pending[0]] = pending[1]
        pending = (slice(start, stop), fused)
    fused_input[:, :, pending[0]] = pending[1]
    return total / (height * fusion_buffer.shape[3])


def _tiled(network: IPASSR, views: torch.Tensor, plan: InferencePlan,
           details: RowAttention | None, keep_rows: Sequence[int] = ()) -> torch.Tensor:
    """Band-wise forward in four passes; exact thanks to halos and whole-image statistics."""
    height, width, scale = views.shape[2], views.shape[3], network.scale
    halos = stage_halos(network)
    channels = network.fusion.project.out_channels
    fusion_buffer = _empty_like_layout(views, 2 * channels)
    if network.attention is not None:
        stats = _hierarchy_statistics(network, views, fusion_buffer, plan, halos["extract"])
        _tiled_attention(network, views, fusion_buffer, stats, plan, halos["embed"], details,
                         keep_rows)
    else:
        for start, stop in _row_bands(height, plan.band_rows):
            features = _with_halo(lambda v: extract(network, v)[0], views, start, stop,
                                  halos["extract"])
            fusion_buffer[:, :channels, start:stop] = features
            fusion_buffer[:, channels:, start:stop] = features
    pooled = _tiled_fusion(network, fusion_buffer, plan, halos["fusion"])
    fused = fusion_buffer[:, :2 * channels]
    weights = channel_weights(network.fusion.channel_attention,
                              pooled.to(views.dtype)[:, :, None, None])
    out = _empty_like_layout(views, 3, scale * height, scale * width)
    halo = halos["reconstruct"]
    for start, stop in _row_bands(height, plan.band_rows):
        lo, hi = max(0, start - halo), min(height, stop + halo)
        _reconstruct_rows(network, fused[:, :, lo:hi], weights, views[:, :, lo:hi],
                          out[:, :, scale * start:scale * stop], start - lo, stop - lo)
    return out


def stereo_forward(network: IPASSR, left: torch.Tensor, right: torch.Tensor, *,
                   max_memory: int | None = None, plan: InferencePlan | None = None,
                   return_details: bool = False, keep_rows: Sequence[int] = ()):
    """Super-resolve (B, 3, H, W) pairs within ``max_memory`` bytes of activations.

    Equals ``network(left, right)`` in eval mode to float32 rounding. Runs in the network's
    dtype (e.g. ``network.to(torch.bfloat16)`` on a GPU), with attention softmax and valid
    masks in float32. ``plan`` overrides the automatic choice (tests force tiling with it).
    With ``return_details`` a ``RowAttention``
    (valid masks and attention offsets, (B, 1, H, W) each, and the full maps of the image
    rows listed in ``keep_rows``) is returned as a third value. CPU subnormals are flushed
    to zero meanwhile (``ipassr.chunked.subnormals_flushed``: the same result, faster).
    """
    views = _prepare(network, left, right).to(next(network.parameters()).dtype)
    batch, height, width = left.shape[0], left.shape[2], left.shape[3]
    if plan is None:
        plan = plan_inference(network, batch, height, width, max_memory)
    details = _new_details(views) if return_details else None
    with torch.inference_mode(), subnormals_flushed():
        run = _tiled if plan.tiled else _untiled
        out = run(network, views, plan, details, keep_rows).contiguous()
    sr_left, sr_right = out[:batch], out[batch:]
    return (sr_left, sr_right, details) if return_details else (sr_left, sr_right)


__all__ = ["InferencePlan", "plan_inference", "stereo_forward", "stage_halos",
           "receptive_radius", "DEFAULT_MAX_MEMORY", "default_max_memory", "memory_budget",
           "plain_forward_bytes"]
