"""Export iPASSR to ONNX or TorchScript, with dynamic batch, height and width, and verify it.

The exported graph is the plain eval-mode forward: each view's BatchNorm uses its own
statistics and the full (B, H, W, W) attention maps are computed (memory grows with H * W^2 in
the runtime; the row-chunked and tiled paths of ``ipassr.inference.fast`` are Python loops and are not
part of the graph). Each view goes through the trunk separately, so nothing in the graph depends
on the batch size.

After export the file is loaded back (ONNX Runtime or ``torch.jit.load``) and run on inputs of a
*different* batch, height and width than the tracing example; its output must match PyTorch, so
a graph that baked in a size is caught and refused instead of silently giving wrong results.
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.bipam import MASK_SHARPNESS, RELAX_PIXELS, BiPAM
from ..errors import IpassrError
from ..data.io import PathLike, atomic_path
from ..models.ipassr import IPASSR

FORMATS = ("onnx", "torchscript")
TRACE_SIZE = (1, 16, 24)  # batch, height, width of the tracing example
CHECK_SIZE = (2, 13, 30)  # a different batch, height and width for the check
LARGE_CHECK_SIZE = (1, 50, 150)  # past NAFSSR's (45, 135) pooling window
TOLERANCE = 1e-4
ONNX_OPSET = 17
INPUT_NAMES, OUTPUT_NAMES = ["left", "right"], ["sr_left", "sr_right"]


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


class ExportForward(nn.Module):
    """Eval-mode iPASSR on one batch of pairs, each view through the trunk on its own."""

    def __init__(self, network: IPASSR) -> None:
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


def _example(size: tuple[int, int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random views over a ramp from dark (top left) to bright (bottom right): local statistics
    differ across the image, so a pooling that turned global would show."""
    generator = torch.Generator().manual_seed(seed)
    batch, height, width = size
    ramp = (torch.linspace(0, 0.7, height)[:, None] + torch.linspace(0, 0.3, width)[None, :])
    return tuple(0.5 * torch.rand(batch, 3, height, width, generator=generator) + 0.5 * ramp
                 for _ in range(2))


def _serialize_onnx(module: ExportForward, example: tuple[torch.Tensor, torch.Tensor]) -> bytes:
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        raise IpassrError("ONNX export needs the 'onnx' package: pip install 'ipassr[export]'"
                          ) from exc
    axes = {0: "batch", 2: "height", 3: "width"}
    sr_axes = {0: "batch", 2: "sr_height", 3: "sr_width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, buffer, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                          dynamic_axes={"left": axes, "right": axes, "sr_left": sr_axes,
                                        "sr_right": sr_axes})
    return buffer.getvalue()


def _serialize_torchscript(module: ExportForward, example: tuple[torch.Tensor, torch.Tensor]
                           ) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def run_onnx(data: bytes | PathLike, left: np.ndarray, right: np.ndarray) -> list[np.ndarray]:
    """Run an exported ONNX model with ONNX Runtime on float32 (B, 3, H, W) arrays."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise IpassrError("checking an ONNX export needs 'onnxruntime': pip install "
                          "'ipassr[export]' (or pass --no-check)") from exc
    source = data if isinstance(data, bytes) else str(data)
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {"left": left, "right": right})


def run_torchscript(data: bytes | PathLike, left: torch.Tensor, right: torch.Tensor
                    ) -> list[torch.Tensor]:
    """Run an exported TorchScript model."""
    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load still works
        module = torch.jit.load(source, map_location="cpu")
    with torch.inference_mode(), torch.jit.optimized_execution(False):  # skip slow JIT passes
        return list(module(left, right))


def check_sizes(module: nn.Module) -> list[tuple[int, int, int]]:
    """Where an export is checked: a new batch/height/width, and for NAFSSR also a size past its
    pooling window, where the pooling turns local."""
    return [CHECK_SIZE] + ([LARGE_CHECK_SIZE] if isinstance(module, ZooExportForward) else [])


def check_export(data: bytes, fmt: str, module: nn.Module) -> float:
    """Max abs difference of the exported model against PyTorch at the ``check_sizes``."""
    worst = 0.0
    for size in check_sizes(module):
        left, right = _example(size, seed=1)
        with torch.inference_mode():
            expected = module(left, right)
        if fmt == "onnx":
            actual = [torch.from_numpy(a) for a in run_onnx(data, left.numpy(), right.numpy())]
        else:
            actual = run_torchscript(data, left, right)
        if not all(a.shape == e.shape for a, e in zip(actual, expected)):
            return float("inf")
        worst = max(worst, *(float((a - e).abs().max()) for a, e in zip(actual, expected)))
    return worst


def export_model(network: IPASSR, path: PathLike, fmt: Literal["onnx", "torchscript"] = "onnx",
                 *, check: bool = True) -> float | None:
    """Write ``network`` as ONNX or TorchScript to ``path`` (atomically); return the check error.

    The check runs the exported file at a batch, height and width other than the tracing
    example's and compares with PyTorch; a mismatch above 1e-4 is an ``IpassrError``.
    """
    if fmt not in FORMATS:
        raise IpassrError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    network = copy.deepcopy(network).cpu().float()  # the caller's network keeps its device and mode
    module = (ExportForward(network) if isinstance(network, IPASSR)
              else zoo_export_module(network))
    example = _example(TRACE_SIZE, seed=0)
    serialize = _serialize_onnx if fmt == "onnx" else _serialize_torchscript
    try:
        data = serialize(module, example)
    except IpassrError:
        raise
    except Exception as exc:  # the exporters raise many kinds of errors
        raise IpassrError(f"this model variant ({_describe(network)}) cannot be exported to "
                          f"{fmt}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    error = None
    if check:
        error = check_export(data, fmt, module)
        if not error <= TOLERANCE:
            raise IpassrError(
                f"this model variant ({_describe(network)}) cannot be exported to {fmt} with a "
                f"dynamic size: at batch/height/width {' and '.join(map(str, check_sizes(module)))}"
                f" the exported model differs from PyTorch by up to {error:.3g} (the graph fixed "
                "a size while tracing); nothing was written")
    with atomic_path(path) as temporary:
        Path(temporary).write_bytes(data)
    return error


def zoo_export_module(network: nn.Module) -> nn.Module:
    """The export forward of NAFSSR or PASSRnet (their plain forward, attention unchunked).

    NAFSSR's test-time pooling depends on the image size, so its check also runs at a size past
    the pooling window (``check_sizes``). PASSRnet's valid-mask morphology, SciPy at inference,
    is recorded as TorchScript code in the graph (``ipassr.models.morphology``: connected components
    by a loop that runs until they settle; ONNX keeps it as a Loop).
    """
    return ZooExportForward(network)


class ZooExportForward(nn.Module):
    """``(left, right) -> (sr_left, sr_right)`` of NAFSSR or PASSRnet, attention in one chunk."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.eval()  # as ExportForward: else the check's reference would run in training mode
        self.network.set_attention_memory(None)  # whole maps: no Python loop over rows

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network(left, right)


def _describe(network: nn.Module) -> str:
    if not isinstance(network, IPASSR):
        return f"{type(network).__name__} x{network.scale}"
    config = network.config
    options = [f"x{config.scale}"] + [name for name in ("use_attention", "use_whitening",
                                                         "use_valid_mask")
                                      if not getattr(config, name)]
    return ", ".join(options[:1] + [f"{name}=False" for name in options[1:]])


__all__ = ["export_model", "check_export", "run_onnx", "run_torchscript", "ExportForward",
           "FORMATS"]
