"""Export any exportable registered network to ONNX or TorchScript, with dynamic batch, height
and width, and verify it.

The exported graph is the network's plain eval-mode forward, or the export forward its spec names
(iPASSR's ``ExportForward``: each view's BatchNorm uses its own statistics, each view goes through
the trunk separately, the full (B, H, W, W) attention maps are computed: memory grows with H * W^2
in the runtime; the row-chunked and tiled paths of ``ipassr.inference.fast`` are Python loops and
are not part of the graph). Attention that runs in chunks of rows (``set_attention_memory``) is
exported unchunked.

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
from torch import nn

from . import EXPORT_FORMATS as FORMATS
from ..errors import IpassrError
from ..data.io import PathLike, atomic_path
from ..models.registry import network_options, spec_of

TRACE_SIZE = (1, 16, 24)  # batch, height, width of the tracing example
CHECK_SIZE = (2, 13, 30)  # a different batch, height and width for the check
LARGE_CHECK_SIZE = (1, 50, 150)  # past a pooling window such as NAFSSR's (45, 135)
TOLERANCE = 1e-4
ONNX_OPSET = 17
INPUT_NAMES, OUTPUT_NAMES = ["left", "right"], ["sr_left", "sr_right"]


def _example(size: tuple[int, int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random views over a ramp from dark (top left) to bright (bottom right): local statistics
    differ across the image, so a pooling that turned global would show."""
    generator = torch.Generator().manual_seed(seed)
    batch, height, width = size
    ramp = (torch.linspace(0, 0.7, height)[:, None] + torch.linspace(0, 0.3, width)[None, :])
    return tuple(0.5 * torch.rand(batch, 3, height, width, generator=generator) + 0.5 * ramp
                 for _ in range(2))


def _serialize_onnx(module: nn.Module, example: tuple[torch.Tensor, torch.Tensor]) -> bytes:
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


def _serialize_torchscript(module: nn.Module, example: tuple[torch.Tensor, torch.Tensor]
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


def check_sizes(module: nn.Module, size_windows: bool = True) -> list[tuple[int, int, int]]:
    """Where an export is checked: a new batch/height/width, and for a network's own forward
    that may have windows sized from the input (NAFSSR's pooling; ``NetworkSpec.size_windows``)
    also a larger size, past such a window."""
    past_windows = isinstance(module, OwnForward) and size_windows
    return [CHECK_SIZE] + ([LARGE_CHECK_SIZE] if past_windows else [])


def check_export(data: bytes, fmt: str, module: nn.Module,
                 sizes: list[tuple[int, int, int]] | None = None) -> float:
    """Max abs difference of the exported model against PyTorch at ``sizes`` (default: the
    ``check_sizes`` of a network that may have size windows)."""
    worst = 0.0
    for size in check_sizes(module) if sizes is None else sizes:
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


def export_model(network: nn.Module, path: PathLike,
                 fmt: Literal["onnx", "torchscript"] = "onnx", *, check: bool = True
                 ) -> float | None:
    """Write ``network`` as ONNX or TorchScript to ``path`` (atomically); return the check error.

    The check runs the exported file at a batch, height and width other than the tracing
    example's and compares with PyTorch; a mismatch above 1e-4 is an ``IpassrError``.
    """
    if fmt not in FORMATS:
        raise IpassrError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    spec = spec_of(network)
    if not spec.exportable:
        raise IpassrError(f"{spec.display_name} cannot be exported (its spec says so)")
    network = copy.deepcopy(network).cpu().float()  # the caller's network keeps its device and mode
    module = (spec.export_forward(network) if spec.export_forward is not None
              else OwnForward(network))
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
        sizes = check_sizes(module, spec.size_windows)
        error = check_export(data, fmt, module, sizes)
        if not error <= TOLERANCE:
            raise IpassrError(
                f"this model variant ({_describe(network)}) cannot be exported to {fmt} with a "
                f"dynamic size: at batch/height/width {' and '.join(map(str, sizes))}"
                f" the exported model differs from PyTorch by up to {error:.3g} (the graph fixed "
                "a size while tracing); nothing was written")
    with atomic_path(path) as temporary:
        Path(temporary).write_bytes(data)
    return error


class OwnForward(nn.Module):
    """``(left, right) -> (sr_left, sr_right)``: the network's own forward in eval mode, its
    attention unchunked (NAFSSR, PASSRnet, plugins).

    PASSRnet's valid-mask morphology, SciPy at inference, is recorded as TorchScript code in the
    graph (``ipassr.models.morphology``: connected components by a loop that runs until they
    settle; ONNX keeps it as a Loop).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.eval()  # else the check's reference would run in training mode
        if hasattr(network, "set_attention_memory"):
            network.set_attention_memory(None)  # whole maps: no Python loop over rows

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network(left, right)


def _describe(network: nn.Module) -> str:
    """'iPASSR x2, use_valid_mask=False': the network, its scale and the options switched off."""
    options = network_options(network)
    off = [f"{name}=False" for name, value in options.items() if value is False]
    return ", ".join([f"{spec_of(network).display_name} x{network.scale}"] + off)


__all__ = ["export_model", "check_export", "run_onnx", "run_torchscript", "OwnForward", "FORMATS"]
