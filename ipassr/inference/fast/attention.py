"""Memory-bounded biPAM: parallax attention computed a few image rows at a time.

Each image row attends only within itself (the epipolar line), so the (H, W, W) attention maps
never need to exist at once: rows are processed in chunks sized from a memory budget, and peak
memory grows with H * W (the features) plus one chunk of (rows, W, W), instead of H * W^2.

Everything is computed from one score matrix S (rows, W_left, W_right) per chunk, without
transposed copies and without the 5-fold relaxed map of the reference implementation:

* M_R->L = softmax(S, over right columns)             (``row_softmax``)
* M_L->R^T = softmax(S, over left columns)            (``col_softmax``, the same layout as S)
* V_L[i] = tanh(5 * sum_j (sum_{|d|<=2} M_R->L[i+d, j]) * M_L->R[j, i])
* V_R[j] = tanh(5 * sum_i M_R->L[i, j] * (sum_{|d|<=2} M_L->R[j+d, i]))

The relaxation is a sum of the map shifted along one axis (zero-filled), i.e. the sum of five
shifted diagonals of M_R->L x M_L->R; it is applied to one chunk at a time. The results equal
``BiPAM``'s plain path to float32 rounding (tests/test_chunked.py).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, NamedTuple, Sequence

import torch

from ...models.bipam import MASK_SHARPNESS, relax_along
from ...errors import IpassrError
from ...sizes import FLOAT_BYTES, format_bytes

# (rows, W, W) float32 buffers per chunk row: score (reused for the relaxed maps), two softmaxes,
# and one more for the temporaries of half-precision features and the details (visualize).
MAPS_PER_ROW = 4
# bytes for one chunk of attention maps on the CPU: smaller chunks stay nearer the cache and were
# faster (bench/README.md, run F)
DEFAULT_ATTENTION_MEMORY = 32 * 2 ** 20


class RowAttention(NamedTuple):
    """What the chunked biPAM can return besides the fused features (no full maps).

    ``rows`` holds the full maps of a few requested image rows only: row -> (M_R->L, M_L->R),
    each (B, W, W) indexed (b, target column, source column).
    """

    valid_left: torch.Tensor  # V_L (B, 1, H, W)
    valid_right: torch.Tensor  # V_R (B, 1, H, W)
    offset_left: torch.Tensor  # expected right column minus left column, (B, 1, H, W)
    offset_right: torch.Tensor  # expected left column minus right column, (B, 1, H, W)
    peak_offset_left: torch.Tensor  # most attended right column minus left column, (B, 1, H, W)
    peak_offset_right: torch.Tensor  # most attended left column minus right column, (B, 1, H, W)
    peak_left: torch.Tensor  # the largest weight of each left pixel's row of M_R->L, (B, 1, H, W)
    peak_right: torch.Tensor  # the same for each right pixel in M_L->R, (B, 1, H, W)
    rows: dict[int, tuple[torch.Tensor, torch.Tensor]]


PER_PIXEL_DETAILS = len(RowAttention._fields) - 1  # every field but ``rows`` is a (B, 1, H, W) map


def subnormals_are_flushed() -> bool:
    """Whether this thread's CPU float arithmetic flushes subnormal numbers to zero (FTZ/DAZ)."""
    return bool((torch.tensor([1e-39]) * 1.0).item() == 0.0)


@contextlib.contextmanager
def subnormals_flushed() -> Iterator[None]:
    """Run a block with float32 subnormal numbers treated as zero on the CPU (x86 FTZ/DAZ).

    Softmax attention maps are full of subnormals (exp of scores 87 to 104 below the row
    maximum), and x86 CPUs compute with them in microcode, many times slower (bench/README.md,
    "Subnormal floats"). Flushing only changes values below 1.2e-38, far under
    float32 rounding of the outputs (bench/README.md). The setting is per thread: torch's
    worker threads keep the one they were started with, so for full speed enter this before
    a process's first parallel torch operation (the ``ipassr`` CLI does). The calling thread's
    own setting is restored on exit.
    """
    already = subnormals_are_flushed()
    if not already:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not already:
            torch.set_flush_denormal(False)


def attention_row_bytes(batch: int, width: int) -> int:
    """Bytes of attention buffers one image row needs (all pairs of the batch)."""
    return MAPS_PER_ROW * batch * width * width * FLOAT_BYTES


def rows_per_chunk(batch: int, height: int, width: int, budget: int) -> int:
    """How many image rows of attention fit in ``budget`` bytes (at least one, at most H)."""
    row = attention_row_bytes(batch, width)
    if budget < row:
        raise IpassrError(
            f"memory budget {format_bytes(budget)} is too small for one image row of parallax "
            f"attention at width {width} (batch {batch}): the minimum is {format_bytes(row)}")
    return max(1, min(height, budget // row))


def valid_masks_from_softmaxes(row_softmax: torch.Tensor, col_softmax: torch.Tensor,
                               scratch: torch.Tensor | None = None
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """V_L (..., W_left) and V_R (..., W_right) from M_R->L and M_L->R^T, both (..., Wl, Wr).

    ``scratch``: a buffer of the maps' shape to reuse for the relaxed maps (else allocated).
    """
    # relax M_R->L along its left-column axis, then a dot product of each row with M_L->R^T's
    relaxed = relax_along(row_softmax, dim=-2, out=scratch)
    cycle_left = torch.einsum("...ij,...ij->...i", relaxed, col_softmax)  # batched row dots
    relaxed = relax_along(col_softmax, dim=-1, out=relaxed)  # M_L->R along its right-column axis
    cycle_right = relaxed.mul_(row_softmax).sum(-2)
    return torch.tanh(MASK_SHARPNESS * cycle_left), torch.tanh(MASK_SHARPNESS * cycle_right)


def expected_offset(maps: torch.Tensor) -> torch.Tensor:
    """Expected source column minus target column of maps (..., W_target, W_source)."""
    source = torch.arange(maps.shape[-1], dtype=maps.dtype, device=maps.device)
    target = torch.arange(maps.shape[-2], dtype=maps.dtype, device=maps.device)
    return maps @ source - target


def peak_offset(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Most attended source column minus target column, and its weight, of maps (..., Wt, Ws)."""
    peak, column = maps.max(dim=-1)
    target = torch.arange(maps.shape[-2], dtype=maps.dtype, device=maps.device)
    return column.to(maps.dtype) - target, peak


def _rows(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows start:stop of (B, C, H, W) as (B, rows, W, C) (a view when x is channels_last)."""
    return x[:, :, start:stop].permute(0, 2, 3, 1)


def _blend(own: torch.Tensor, converted: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """own * (1 - V) + converted * V (eq. 5), in place in ``converted``; it alone without a mask."""
    if valid is None:
        return converted
    return converted.sub_(own).mul_(valid.unsqueeze(-1)).add_(own)  # own + V (converted - own)


def chunked_parallax_fusion(query: torch.Tensor, key: torch.Tensor, left: torch.Tensor,
                            right: torch.Tensor, *, use_valid_mask: bool = True,
                            budget: int = DEFAULT_ATTENTION_MEMORY, rows: int | None = None,
                            out_left: torch.Tensor | None = None,
                            out_right: torch.Tensor | None = None, with_details: bool = False,
                            keep_rows: Sequence[int] = ()
                            ) -> tuple[torch.Tensor, torch.Tensor, RowAttention | None]:
    """biPAM's output (eq. 5) for both views, a chunk of rows at a time.

    ``query`` (left) and ``key`` (right) are the whitened embeddings (B, Cq, H, W); ``left`` and
    ``right`` the features to exchange (B, C, H, W). ``rows`` overrides the chunk height that
    ``budget`` (bytes for the attention buffers) would give. Results go to ``out_left`` /
    ``out_right`` when given (e.g. slices of a larger buffer). With ``with_details`` the valid
    masks and the attention's expected column offsets are returned too, (B, 1, H, W) each,
    plus the full maps of the rows listed in ``keep_rows``.
    """
    batch, _, height, width = query.shape
    step = rows if rows is not None else rows_per_chunk(batch, height, width, budget)
    if out_left is None:
        out_left = torch.empty_like(left)
    if out_right is None:
        out_right = torch.empty_like(right)
    details = None
    if with_details:
        details = RowAttention(*(query.new_empty(batch, 1, height, width)
                                 for _ in range(PER_PIXEL_DETAILS)), {})
    # one set of buffers for all chunks: no fresh pages to fault in per chunk
    buffers = [query.new_empty(batch * step * width * width, dtype=torch.float32)
               for _ in range(3)]
    for start in range(0, height, step):
        stop = min(height, start + step)
        # (B, r, W, W) each, contiguous also for the last, shorter chunk
        score, row_softmax, col_softmax = (
            buffer[:batch * (stop - start) * width * width].view(batch, stop - start, width, width)
            for buffer in buffers)
        # scores, softmax and masks in float32 even for half-precision features: the scores are
        # unscaled and large, and bf16 would round them by whole units
        torch.matmul(_rows(query, start, stop).float(),
                     key[:, :, start:stop].transpose(1, 2).float(), out=score)
        torch.softmax(score, dim=-1, out=row_softmax)  # M_R->L (B, r, Wl, Wr)
        torch.softmax(score, dim=-2, out=col_softmax)  # M_L->R transposed, same layout
        own_left, own_right = _rows(left, start, stop), _rows(right, start, stop)
        dtype = own_left.dtype
        converted_left = torch.matmul(row_softmax.to(dtype), own_right)  # (B, r, Wl, C)
        converted_right = torch.matmul(col_softmax.transpose(-1, -2).to(dtype), own_left)
        valid_left = valid_right = None
        if use_valid_mask:
            valid_left, valid_right = (v.to(dtype) for v in valid_masks_from_softmaxes(
                row_softmax, col_softmax, scratch=score))  # the scores are no longer needed
        _rows(out_left, start, stop).copy_(_blend(own_left, converted_left, valid_left))
        _rows(out_right, start, stop).copy_(_blend(own_right, converted_right, valid_right))
        if details is not None:
            ones = torch.ones_like(row_softmax[..., 0])
            details.valid_left[:, 0, start:stop] = ones if valid_left is None else valid_left
            details.valid_right[:, 0, start:stop] = ones if valid_right is None else valid_right
            details.offset_left[:, 0, start:stop] = expected_offset(row_softmax)
            details.offset_right[:, 0, start:stop] = expected_offset(col_softmax.transpose(-1, -2))
            for side, maps in (("left", row_softmax), ("right", col_softmax.transpose(-1, -2))):
                offset, peak = peak_offset(maps)
                getattr(details, f"peak_offset_{side}")[:, 0, start:stop] = offset
                getattr(details, f"peak_{side}")[:, 0, start:stop] = peak
            for row in keep_rows:
                if start <= row < stop:
                    details.rows[row] = (row_softmax[:, row - start].clone(),
                                         col_softmax[:, row - start].transpose(-1, -2).clone())
    return out_left, out_right, details


__all__ = ["RowAttention", "chunked_parallax_fusion", "rows_per_chunk", "attention_row_bytes",
           "valid_masks_from_softmaxes", "expected_offset", "peak_offset",
           "PER_PIXEL_DETAILS",
           "subnormals_flushed", "subnormals_are_flushed", "DEFAULT_ATTENTION_MEMORY"]
