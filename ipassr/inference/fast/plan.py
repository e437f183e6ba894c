"""Planning a fast forward pass: whole image or bands, and the attention chunk height, so that
the pass fits a memory budget (bytes of activations), with the halos each banded pass needs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import IpassrError
from ...sizes import FLOAT_BYTES, format_bytes
from .attention import DEFAULT_ATTENTION_MEMORY, attention_row_bytes

DEFAULT_MAX_MEMORY = 4 * 2 ** 30  # bytes of activations one forward pass may use (CPU)
CUDA_MEMORY_FRACTION = 0.5  # on a GPU the default budget is this share of its available memory
# Cap on one attention chunk's maps on a GPU, where every chunk costs ~20 kernel launches, so
# larger chunks are faster there (bench/README.md, the GPU results).
CUDA_ATTENTION_MEMORY = 4 * 2 ** 30
MIN_BAND_ROWS = 8
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
    budget: int = 0  # the activation budget the plan was made for
    plain_fits: bool = False  # whether IPASSR.forward, full (H, W, W) maps at once, fits it too

    def __post_init__(self) -> None:
        if self.band_rows < 1 or self.attention_rows < 1:
            raise ValueError(f"an inference plan needs at least 1 row per band and per attention "
                             f"chunk, got band_rows={self.band_rows}, "
                             f"attention_rows={self.attention_rows}")


def receptive_radius(module: nn.Module) -> int:
    """Rows of context a chain of convolutions needs on each side (sum of kernel half-widths)."""
    return sum((m.kernel_size[0] // 2) * m.dilation[0] for m in module.modules()
               if isinstance(m, nn.Conv2d))


def stage_halos(network: nn.Module) -> dict[str, int]:
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
    runs untiled there, much faster than in bands (bench/README.md, the GPU results)."""
    if device.type != "cuda":
        return DEFAULT_MAX_MEMORY
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int((free + cached) * CUDA_MEMORY_FRACTION)


PLAIN_MAPS = 12  # live (H, W, W) float32 maps at the plain forward's peak (its biPAM, measured)


def plain_forward_bytes(network: nn.Module, batch: int, height: int, width: int) -> int:
    """Rough peak activation bytes of ``IPASSR.forward``, which builds the full (H, W, W)
    attention maps (KITTI x2: 4.2 GB predicted, 4.16 GiB measured on a GPU)."""
    maps = PLAIN_MAPS * batch * height * width * width * FLOAT_BYTES if network.attention else 0
    return maps + _untiled_bytes(network, batch, height, width)


def _output_bytes(network: nn.Module, batch: int, height: int, width: int) -> int:
    """The SR output of both views of a batch (float32)."""
    return 2 * batch * 3 * network.scale ** 2 * height * width * FLOAT_BYTES


def _untiled_bytes(network: nn.Module, batch: int, height: int, width: int) -> int:
    """Peak activations of the untiled fast pass, attention chunk aside, output included."""
    return (UNTILED_CHANNELS * 2 * batch * height * width * FLOAT_BYTES
            + _output_bytes(network, batch, height, width))


def attention_chunk_cap(device: torch.device) -> int:
    """Most bytes of attention maps one chunk of rows may use: larger chunks are slower on
    the CPU (32 MiB), but on a GPU they save kernel launches (4 GiB)."""
    return CUDA_ATTENTION_MEMORY if device.type == "cuda" else DEFAULT_ATTENTION_MEMORY


def plan_inference(network: nn.Module, batch: int, height: int, width: int,
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
        return InferencePlan(False, height, rows, untiled + rows * row_attention, budget,
                             plain_forward_bytes(network, batch, height, width) <= budget)
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
                         stored + per_band_row * (band + 2 * halo) + rows * row_attention, budget)


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




__all__ = ["InferencePlan", "plan_inference", "stage_halos", "receptive_radius",
           "DEFAULT_MAX_MEMORY", "CUDA_ATTENTION_MEMORY", "default_max_memory", "memory_budget",
           "attention_chunk_cap", "plain_forward_bytes"]
