"""Whole fast passes: untiled, or tiled in horizontal bands with halos, and ``stereo_forward``.

Tiling stays exact: the two statistics that span the whole image are gathered in extra passes,
biPAM's per-view BatchNorm statistics (pass 1) and the channel attention's global average pool
(pass 3). Shapes: views (B, 3, H, W) in [0, 1] -> SR views (B, 3, sH, sW).
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Sequence

import torch
from torch import nn

from ...errors import IpassrError
from .attention import PER_PIXEL_DETAILS, RowAttention, chunked_parallax_fusion, subnormals_flushed
from .plan import InferencePlan, plan_inference, stage_halos
from .stages import (channel_weights, dense_block, dense_group, empty_channels_last,
                     extract, query_and_key)
from .upsample import upsample_rows


def _row_bands(height: int, band: int) -> list[tuple[int, int]]:
    return [(start, min(height, start + band)) for start in range(0, height, band)]


def _with_halo(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, start: int,
               stop: int, halo: int) -> torch.Tensor:
    """fn applied to rows start:stop of x plus ``halo`` rows each side; the rows start:stop back."""
    lo, hi = max(0, start - halo), min(x.shape[2], stop + halo)
    return fn(x[:, :, lo:hi])[:, :, start - lo:stop - lo]


def _prepare(network: nn.Module, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    if network.training:
        raise ValueError("stereo_forward implements eval-mode inference: call network.eval()")
    if left.shape != right.shape:
        raise IpassrError(f"left {tuple(left.shape)} and right {tuple(right.shape)} differ")
    if network.attention is not None and left.shape[2] * left.shape[3] < 2:
        raise IpassrError(f"a {left.shape[3]}x{left.shape[2]} pair is too small: biPAM normalises "
                          "each view by the mean and variance of its own pixels, which needs at "
                          "least 2 pixels")
    return torch.cat((left, right), dim=0).contiguous(memory_format=torch.channels_last)


def _exchange(network: nn.Module, query: torch.Tensor, key: torch.Tensor, fusion_input: torch.Tensor,
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


def _reconstruct_rows(network: nn.Module, fused: torch.Tensor, weights: torch.Tensor,
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


def _untiled(network: nn.Module, views: torch.Tensor, plan: InferencePlan,
             details: RowAttention | None, keep_rows: Sequence[int] = ()) -> torch.Tensor:
    """Whole-image forward: every stage at once, attention in chunks of rows."""
    batch, height = views.shape[0] // 2, views.shape[2]
    channels = network.fusion.project.out_channels
    features, hierarchy = extract(network, views)
    query = key = None
    if network.attention is not None:  # before the fusion buffer exists: lower peak memory
        query, key = query_and_key(network.attention, hierarchy, batch)
    del hierarchy
    fusion_buffer = empty_channels_last(views, 2 * channels)
    fusion_buffer[:, :channels] = features
    del features
    _exchange(network, query, key, fusion_buffer, slice(0, height), plan.attention_rows, details,
              keep_rows)
    del query, key
    fused = dense_block(network.fusion.dense, fusion_buffer)
    del fusion_buffer
    weights = channel_weights(network.fusion.channel_attention,
                              fused.mean(dim=(2, 3), keepdim=True))
    out = empty_channels_last(views, 3, network.scale * height, network.scale * views.shape[3])
    _reconstruct_rows(network, fused, weights, views, out, 0, height, in_place=True)
    return out


def _hierarchy_statistics(network: nn.Module, views: torch.Tensor, fusion_buffer: torch.Tensor,
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


def _tiled_attention(network: nn.Module, views: torch.Tensor, fusion_buffer: torch.Tensor,
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


def _tiled_fusion(network: nn.Module, fusion_buffer: torch.Tensor, plan: InferencePlan, halo: int
                  ) -> torch.Tensor:
    """Pass 3: fusion RDB band by band, written back in place; returns the global pool (N, C).

    A band's output overwrites its input rows only once no later band reads them as halo: after
    the next band when bands are at least ``halo`` rows, after several when they are narrower.
    """
    height = fusion_buffer.shape[2]
    channels = network.fusion.dense.fuse.out_channels
    fused_input = fusion_buffer[:, :channels]
    total = torch.zeros(fusion_buffer.shape[0], channels, dtype=torch.float64,
                        device=fusion_buffer.device)
    pending: deque[tuple[slice, torch.Tensor]] = deque()  # outputs whose rows are still read
    for start, stop in _row_bands(height, plan.band_rows):
        fused = _with_halo(lambda x: dense_block(network.fusion.dense, x), fused_input, start,
                           stop, halo)
        total += fused.double().sum(dim=(2, 3))
        while pending and pending[0][0].stop <= stop - halo:  # the next band reads from there
            rows, done = pending.popleft()
            fused_input[:, :, rows] = done
        pending.append((slice(start, stop), fused))
    for rows, done in pending:
        fused_input[:, :, rows] = done
    return total / (height * fusion_buffer.shape[3])


def _tiled(network: nn.Module, views: torch.Tensor, plan: InferencePlan,
           details: RowAttention | None, keep_rows: Sequence[int] = ()) -> torch.Tensor:
    """Band-wise forward in four passes; exact thanks to halos and whole-image statistics."""
    height, width, scale = views.shape[2], views.shape[3], network.scale
    halos = stage_halos(network)
    channels = network.fusion.project.out_channels
    fusion_buffer = empty_channels_last(views, 2 * channels)
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
    out = empty_channels_last(views, 3, scale * height, scale * width)
    halo = halos["reconstruct"]
    for start, stop in _row_bands(height, plan.band_rows):
        lo, hi = max(0, start - halo), min(height, stop + halo)
        _reconstruct_rows(network, fused[:, :, lo:hi], weights, views[:, :, lo:hi],
                          out[:, :, scale * start:scale * stop], start - lo, stop - lo)
    return out


def stereo_forward(network: nn.Module, left: torch.Tensor, right: torch.Tensor, *,
                   max_memory: int | None = None, plan: InferencePlan | None = None,
                   return_details: bool = False, keep_rows: Sequence[int] = ()):
    """Super-resolve (B, 3, H, W) pairs within ``max_memory`` bytes of activations.

    Equals ``network(left, right)`` in eval mode to float32 rounding. Runs in the network's
    dtype (e.g. ``network.to(torch.bfloat16)`` on a GPU), with attention softmax and valid
    masks in float32. ``plan`` overrides the automatic choice (tests force tiling with it).
    With ``return_details`` a ``RowAttention``
    (valid masks and attention offsets, (B, 1, H, W) each, and the full maps of the image
    rows listed in ``keep_rows``) is returned as a third value. CPU subnormals are flushed
    to zero meanwhile (``ipassr.inference.fast.attention.subnormals_flushed``: the same result, faster).
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


__all__ = ["stereo_forward"]
