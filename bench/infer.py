"""Inference benchmark: the fast, memory-bounded path against a straightforward implementation.

The straightforward path mirrors the reference implementation published with the paper: each
view through the trunk separately with ``torch.cat`` dense blocks, and a biPAM that materialises
the full (H, W, W) maps with ``bmm`` on contiguous permuted copies, builds the 5-fold relaxed map
by concatenation, and ``repeat``s the valid masks over the channels. Both paths use the same
weights (a conformance checkpoint); the benchmark checks that they give the same output.

Each (path, size) runs in its own subprocess so that peak memory (``ru_maxrss`` on CPU,
``torch.cuda.max_memory_allocated`` on GPU) is not polluted by the other. FLOPs are counted with
``torch.utils.flop_counter`` on a few rows (FLOPs are exactly linear in the height: every layer
and every attention row costs the same per image row; oneDNN's fused convolutions are counted as
the convolutions they are) and compared with the machine's measured fp32 matrix-multiply rate
(the roofline's ceiling), measured two ways in the same process right after the passes:
sustained (best of three windows of back-to-back 2048x2048 multiplies, each as long as a pass,
at most 3 s) and burst (best single multiply). On a shared VM the burst rate swings with the
neighbours' load (158 to 319 GFLOP/s in our runs), so the sustained rate, measured the same way
as the pass time (the best of several multi-second runs), is the fair ceiling; both are printed.
Each round's achieved rate (its best pass) is divided by the ceiling measured in the same
process, minutes apart at most, so both see the same load; the table gives the best and the
median round and the range of ceilings seen.

    python bench/infer.py                       # KITTI sizes x4 and x2, then LR 1920x1080 x2
    python bench/infer.py --sizes 310x93:4 --rounds 3
    python bench/infer.py --device cuda --dtypes float32,bfloat16
    python bench/infer.py --straightforward-with-settings   # + straightforward with CLI settings
    python bench/infer.py --device cuda --with-compiled --compile-mode reduce-overhead

``--with-compiled`` also times ``torch.compile`` of the network's plain forward (full attention
maps, so small and medium sizes only), compiled for the pair's size before the timed passes;
the compile time is reported apart.

The fast path runs as the ``ipassr`` CLI runs it: CPU subnormals flushed to zero and huge pages
for large tensors (``THP_MEM_ALLOC_ENABLE=1``), both set before torch starts. The
straightforward path runs as the reference does, without them; ``--straightforward-with-settings``
also times it with them, to show how much of the gain the settings alone give.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipassr.models.checkpoint import load_network  # noqa: E402
from ipassr.models.ipassr import IPASSR  # noqa: E402
from ipassr.inference.fast import plan_inference, stereo_forward  # noqa: E402

CONFORMANCE = ROOT / "tests" / "assets" / "conformance"
DEFAULT_SIZES = "310x93:4,621x187:2,1920x1080:2"
STRAIGHTFORWARD_LIMIT = 48 * 2 ** 30  # skip the straightforward path above this estimate
# measured variants: (path, with the CLI's CPU runtime settings: subnormals flushed, huge pages
# for large tensors). The reference code runs without them; "straightforward+settings" shows
# how much of the gain the settings alone would give it.
PATHS = {"fast": ("fast", True), "straightforward": ("straightforward", False),
         "straightforward+settings": ("straightforward", True),
         "compiled": ("compiled", True)}


# -- the straightforward (reference-style) implementation -------------------------------------------

def m_relax(maps: torch.Tensor, pixels: int = 2) -> torch.Tensor:
    """Reference ``M_Relax``: stack the map and its zero-padded shifts, then sum (5 full copies)."""
    shifted = [maps.unsqueeze(1)]
    for i in range(pixels):
        shifted.append(F.pad(maps[:, :-1 - i, :], (0, 0, i + 1, 0)).unsqueeze(1))
    for i in range(pixels):
        shifted.append(F.pad(maps[:, i + 1:, :], (0, 0, 0, i + 1)).unsqueeze(1))
    return torch.sum(torch.cat(shifted, 1), dim=1)


def straightforward_pam(bipam, x_left, x_right, cat_left, cat_right):
    """The reference biPAM forward (batch statistics in BatchNorm, as its evaluation ran it)."""
    b, c0, h0, w0 = x_left.shape
    norm = bipam.norm

    def embed(cat, projection):
        normed = F.batch_norm(cat, None, None, norm.weight, norm.bias, True, 0.0, norm.eps)
        q = projection(bipam.transition(normed))
        _, c, h, w = q.shape
        return q - torch.mean(q, 3).unsqueeze(3).repeat(1, 1, 1, w)

    Q, K = embed(cat_left, bipam.query), embed(cat_right, bipam.key)
    _, c, h, w = Q.shape
    score = torch.bmm(Q.permute(0, 2, 3, 1).contiguous().view(-1, w, c),
                      K.permute(0, 2, 1, 3).contiguous().view(-1, c, w))
    m_rl = torch.softmax(score, -1)
    m_lr = torch.softmax(score.permute(0, 2, 1), -1)
    relaxed = m_relax(m_rl)
    v_left = torch.bmm(relaxed.contiguous().view(-1, w).unsqueeze(1),
                       m_lr.permute(0, 2, 1).contiguous().view(-1, w).unsqueeze(2)
                       ).contiguous().view(b, 1, h, w)
    relaxed = m_relax(m_lr)
    v_right = torch.bmm(relaxed.contiguous().view(-1, w).unsqueeze(1),
                        m_rl.permute(0, 2, 1).contiguous().view(-1, w).unsqueeze(2)
                        ).contiguous().view(b, 1, h, w)
    v_left, v_right = torch.tanh(5 * v_left), torch.tanh(5 * v_right)
    x_left_t = torch.bmm(m_rl, x_right.permute(0, 2, 3, 1).contiguous().view(-1, w0, c0)
                         ).contiguous().view(b, h0, w0, c0).permute(0, 3, 1, 2)
    x_right_t = torch.bmm(m_lr, x_left.permute(0, 2, 3, 1).contiguous().view(-1, w0, c0)
                          ).contiguous().view(b, h0, w0, c0).permute(0, 3, 1, 2)
    out_left = (x_left * (1 - v_left.repeat(1, c0, 1, 1))
                + x_left_t * v_left.repeat(1, c0, 1, 1))
    out_right = (x_right * (1 - v_right.repeat(1, c0, 1, 1))
                 + x_right_t * v_right.repeat(1, c0, 1, 1))
    return out_left, out_right


def straightforward_forward(net: IPASSR, left: torch.Tensor, right: torch.Tensor):
    """The reference network forward: each view separately, full attention maps."""
    up_left = F.interpolate(left, scale_factor=net.scale, mode="bicubic", align_corners=False)
    up_right = F.interpolate(right, scale_factor=net.scale, mode="bicubic", align_corners=False)
    buf_left, cat_left = net.feature_group(net.feature_conv(left))
    buf_right, cat_right = net.feature_group(net.feature_conv(right))
    t_left, t_right = straightforward_pam(net.attention, buf_left, buf_right, cat_left, cat_right)
    f_left = net.fusion(buf_left, t_left)
    f_right = net.fusion(buf_right, t_right)
    f_left, _ = net.reconstruction_group(f_left)
    f_right, _ = net.reconstruction_group(f_right)
    return net.upsampler(f_left) + up_left, net.upsampler(f_right) + up_right


# -- measurements ---------------------------------------------------------------------------------

def matmul_gflops(device: str, dtype: torch.dtype = torch.float32, n: int | None = None,
                  repeats: int = 5, window: float | None = None) -> float:
    """Best measured dense matrix-multiply rate (GFLOP/s): the roofline's compute ceiling.

    ``window=None``: the best single n x n multiply of ``repeats`` (a burst of ~0.1 s on the
    CPU, which can catch a moment when a shared VM's neighbours are idle). ``window=seconds``:
    the best of ``repeats`` runs of back-to-back multiplies lasting that long each (sustained,
    like a forward pass of that length). n is 2048 on the CPU and 8192 on a GPU (where a smaller
    multiply is too short to time against the synchronisation). On a GPU in float32 the
    multiply uses TF32 exactly when cuDNN's convolutions do (``torch.backends.cudnn.allow_tf32``,
    PyTorch's default True), so the ceiling is the rate of the arithmetic the network runs.
    """
    a, b = _matmul_operands(device, dtype, n)
    with _ceiling_precision(device):
        return _best_rate(a, b, device, repeats, window)


def _matmul_operands(device: str, dtype: torch.dtype, n: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Two random n x n matrices (n: 2048 on the CPU, 8192 on a GPU)."""
    n = n or (8192 if device.startswith("cuda") else 2048)
    return (torch.randn(n, n, device=device, dtype=dtype),
            torch.randn(n, n, device=device, dtype=dtype))


@contextlib.contextmanager
def _ceiling_precision(device: str) -> Iterator[None]:
    """Matmuls in TF32 exactly when cuDNN's convolutions are (GPU float32), for the block."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = (device.startswith("cuda")
                                             and torch.backends.cudnn.allow_tf32)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def _best_rate(a: torch.Tensor, b: torch.Tensor, device: str, repeats: int,
               window: float | None) -> float:
    n = a.shape[0]
    a @ b
    best = 0.0
    for _ in range(repeats):
        _sync(device)
        start, count = time.perf_counter(), 0
        while True:
            a @ b
            count += 1
            _sync(device)
            elapsed = time.perf_counter() - start
            if window is None or elapsed >= window:
                break
        best = max(best, 2 * n ** 3 * count / elapsed / 1e9)
    return best


class PairedWindows:
    """Back-to-back matmul windows taken between the timed passes (the paired ceiling).

    On a shared machine the neighbours' load changes from second to second; a pass and the
    matmul windows right before and after it see nearly the same load, so their ratio is
    steadier than a pass against a ceiling measured minutes apart.
    """

    def __init__(self, device: str, dtype: torch.dtype) -> None:
        self.device = device
        self.a, self.b = _matmul_operands(device, dtype)

    def rate(self, seconds: float) -> float:
        """GFLOP/s of back-to-back multiplies for about ``seconds`` (at least one multiply)."""
        with _ceiling_precision(self.device):
            return _best_rate(self.a, self.b, self.device, 1, seconds)


def count_flops(net: IPASSR, width: int, height: int, device: str, dtype: torch.dtype,
                rows: int = 8) -> float:
    """FLOPs of one fast forward of a (width x height) pair: counted on ``rows`` rows, scaled."""
    from torch.utils.flop_counter import FlopCounterMode

    left = torch.rand(1, 3, rows, width, device=device, dtype=dtype)
    counter = FlopCounterMode(display=False, custom_mapping=_fused_convolution_flops())
    with counter:
        stereo_forward(net, left, left.clone())
    return counter.get_total_flops() * height / rows


def _fused_convolution_flops() -> dict:
    """FLOP formulas for oneDNN's fused convolutions (ipassr.inference.fast.fusion), which the counter lacks.

    Only the convolution is counted, as for ``aten.convolution``: the fused epilogues
    (activation, add, accumulation) are not multiply-adds.
    """
    from torch.utils.flop_counter import conv_flop_count

    def out_of_place(x_shape, *args, out_shape=None, **kwargs):
        # default (x, w, b, ...), or binary (x, other, w, b, ...): 13 arguments
        return conv_flop_count(x_shape, args[1] if len(args) >= 12 else args[0], out_shape)

    def in_place(other_shape, x_shape, w_shape, *args, out_shape=None, **kwargs):
        return conv_flop_count(x_shape, w_shape, out_shape)

    if not hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
        return {}
    # the counter looks formulas up by overload packet
    return {torch.ops.mkldnn._convolution_pointwise: out_of_place,
            torch.ops.mkldnn._convolution_pointwise_: in_place}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _inputs(width: int, height: int, device: str, dtype: torch.dtype):
    """A deterministic textured pair: the right view is the left shifted by a few columns."""
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, height, width + 8, generator=generator)
    left, right = base[..., 8:], base[..., :width]
    return (left.contiguous().to(device, dtype), right.contiguous().to(device, dtype))


def worker(args: argparse.Namespace) -> dict:
    """Run one path at one size in this process; report time, peak memory, FLOPs and output."""
    if args.ftz:  # before torch starts its worker threads, as the ipassr CLI does
        torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    if args.attention_memory:  # the planner reads the caps from ipassr.inference.fast.plan's namespace
        import ipassr.inference.fast.plan

        ipassr.inference.fast.plan.DEFAULT_ATTENTION_MEMORY = args.attention_memory
        ipassr.inference.fast.plan.CUDA_ATTENTION_MEMORY = args.attention_memory
    dtype = getattr(torch, args.dtype)
    net = load_network(CONFORMANCE / f"x{args.scale}.pth.tar", scale=args.scale)
    net = net.to(args.device, dtype).eval()
    width, height = args.width, args.height
    left, right = _inputs(width, height, args.device, dtype)
    warm_left, warm_right = _inputs(32, 16, args.device, dtype)
    compile_seconds = None
    if args.path == "compiled":  # compiled for this size: the warm-up pass is the compilation
        run = torch.compile(net, mode=args.compile_mode)
        warm_left, warm_right = left, right
    elif args.path == "fast":
        run = lambda l, r: stereo_forward(net, l, r, max_memory=args.max_memory)  # noqa: E731
    else:
        run = lambda l, r: straightforward_forward(net, l, r)  # noqa: E731
    start = time.perf_counter()
    with torch.inference_mode():
        run(warm_left, warm_right)
    _sync(args.device)
    if args.path == "compiled":
        compile_seconds = time.perf_counter() - start
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    window = PairedWindows(args.device, dtype) if args.path == "fast" else None
    times, windows = [], []
    if window is not None:  # one untimed full-size pass: oneDNN builds its primitives for it
        start = time.perf_counter()
        with torch.inference_mode():
            run(left, right)
        _sync(args.device)
        untimed = time.perf_counter() - start
    for _ in range(args.repeats):
        if window is not None:  # the matmul right before the pass, as long as the last pass
            windows.append(window.rate(min(3.0, times[-1] if times else untimed)))
        _sync(args.device)
        start = time.perf_counter()
        with torch.inference_mode():
            out = run(left, right)
        _sync(args.device)
        times.append(time.perf_counter() - start)
    if window is not None:
        windows.append(window.rate(min(3.0, times[-1])))
    result = {"path": args.path, "seconds": min(times), "all_seconds": times,
              "compile_seconds": compile_seconds,
              "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "rss_before": rss_before}
    if args.device.startswith("cuda"):
        result["peak_device_memory"] = torch.cuda.max_memory_allocated()
    if args.path == "fast":
        plan = plan_inference(net, 1, height, width, args.max_memory)
        result["plan"] = {"tiled": plan.tiled, "band_rows": plan.band_rows,
                          "attention_rows": plan.attention_rows,
                          "estimated_bytes": plan.estimated_bytes}
        result["flops"] = count_flops(net, width, height, args.device, dtype)
        result["matmul_gflops"] = matmul_gflops(args.device, dtype)
        # windows as long as a pass (at most 3 s): the same kind of "best" as the pass time
        result["matmul_sustained_gflops"] = matmul_gflops(args.device, dtype, repeats=3,
                                                          window=min(3.0, min(times)))
        # each pass against the mean of the matmul windows just before and just after it
        result["paired_fractions"] = [
            result["flops"] / seconds / 1e9 / ((before + after) / 2)
            for seconds, before, after in zip(times, windows, windows[1:])]
    if args.save_output:
        np.save(args.save_output, torch.cat(out).float().cpu().numpy())
    return result


# -- driver ---------------------------------------------------------------------------------------

def _spawn(key: str, width: int, height: int, scale: int, args: argparse.Namespace,
           dtype: str, save: str | None) -> dict:
    """Run one of PATHS in a fresh process (with the CLI's runtime settings where PATHS says)."""
    path, settings = PATHS[key]
    command = [sys.executable, __file__, "--worker", path, "--width", str(width),
               "--height", str(height), "--scale", str(scale), "--device", args.device,
               "--dtype", dtype, "--repeats", str(args.repeats), "--threads", str(args.threads)]
    if args.max_memory:
        command += ["--max-memory", str(args.max_memory)]
    if path == "compiled":
        command += ["--compile-mode", args.compile_mode]
    if args.attention_memory:
        command += ["--attention-memory", str(args.attention_memory)]
    environment = dict(os.environ)
    environment.pop("THP_MEM_ALLOC_ENABLE", None)
    if settings:
        command.append("--ftz")
        environment["THP_MEM_ALLOC_ENABLE"] = "1"  # what ipassr.cli sets before torch loads
    if save:
        command += ["--save-output", save]
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        return {"path": path, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _combine(runs: list[dict]) -> dict:
    """Best time and highest peak memory over the rounds of one path (first error wins)."""
    for run in runs:
        if "error" in run:
            return run
    combined = dict(runs[0])
    combined["seconds"] = min(run["seconds"] for run in runs)
    combined["all_seconds"] = [t for run in runs for t in run["all_seconds"]]
    for key in ("peak_rss", "peak_device_memory"):
        if key in combined:
            combined[key] = max(run[key] for run in runs)
    if "flops" in combined:  # each round's rate against the ceiling measured in its process
        for ceiling in ("matmul_sustained_gflops", "matmul_gflops"):
            combined[ceiling + "_rounds"] = [run[ceiling] for run in runs]
            combined[ceiling + "_fractions"] = sorted(
                run["flops"] / run["seconds"] / 1e9 / run[ceiling] for run in runs)
        combined["paired_fractions"] = sorted(f for run in runs for f in run["paired_fractions"])
    return combined


def straightforward_estimate(width: int, height: int) -> int:
    """Rough peak bytes of the straightforward path: about 12 live (H, W, W) float32 maps."""
    return 12 * height * width * width * 4


def machine_description(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.2f} GiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help="comma-separated LR WIDTHxHEIGHT:SCALE (default %(default)s)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", default="float32", help="e.g. float32,bfloat16 (GPU)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed forward passes per subprocess (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="subprocess pairs per size, fast and straightforward interleaved")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--max-memory", type=int, default=None,
                        help="fast path budget, bytes (default: the library's for the device)")
    parser.add_argument("--attention-memory", type=int, default=None,
                        help="cap on one attention chunk's maps, bytes (default: the library's)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--straightforward-with-settings", action="store_true",
                        help="also time the straightforward path with the CLI's runtime settings")
    parser.add_argument("--with-compiled", action="store_true",
                        help="also time torch.compile of the plain forward (compile time apart)")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile mode for --with-compiled, e.g. reduce-overhead (GPU)")
    parser.add_argument("--worker", choices=("fast", "straightforward", "compiled"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--height", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--save-output", help=argparse.SUPPRESS)
    parser.add_argument("--ftz", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.path = args.worker
        print(json.dumps(worker(args)))
        return 0
    memory_key = "peak_device_memory" if args.device.startswith("cuda") else "peak_rss"
    with_settings = args.straightforward_with_settings
    keys = (["fast", "straightforward"] + (["straightforward+settings"] if with_settings else [])
            + (["compiled"] if args.with_compiled else []))
    print(f"# {datetime.date.today()} on {machine_description(args.device)} "
          f"({args.threads} threads)")
    if args.device.startswith("cuda"):
        print(f"# torch {torch.__version__}; float32 convolutions in TF32: "
              f"{torch.backends.cudnn.allow_tf32} (PyTorch's default; the matmul ceiling follows)")
    extra = (("straightforward+settings s/pair | ratio to it | " if with_settings else "")
             + ("compiled s/pair (compile s) | ratio to it | " if args.with_compiled else ""))
    print("| LR size | scale | dtype | fast s/pair | straightforward s/pair | time ratio | "
          + extra + "fast peak | straightforward peak | memory ratio | max abs diff | "
          "GFLOP/s | % of sustained matmul: best (median) round | % of burst matmul | "
          "% of paired matmul: median pass (range) |")
    print("|---" * (14 + 2 * (len(keys) - 2)) + "|")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.sizes.split(","):
            size, scale = spec.split(":")
            width, height = (int(v) for v in size.split("x"))
            for dtype in args.dtypes.split(","):
                row = {"width": width, "height": height, "scale": int(scale), "dtype": dtype}
                row.update(_measure(keys, width, height, int(scale), dtype, args, tmp))
                results.append(row)
                print(_table_row(row, memory_key, keys), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def _measure(keys: list[str], width: int, height: int, scale: int, dtype: str,
             args: argparse.Namespace, tmp: str) -> dict:
    """Interleaved rounds of every variant at one size: {variant: combined result, ...}."""
    skip = straightforward_estimate(width, height) > STRAIGHTFORWARD_LIMIT
    runs = {key: [] for key in keys}
    saved = {key: f"{tmp}/{width}x{height}x{scale}-{dtype}-{key}.npy" for key in keys}
    for round_ in range(args.rounds):  # interleaved, so all see the same load
        order = ["fast"] if skip else list(keys)
        if round_ % 2:
            order.reverse()
        for key in order:
            save = saved[key] if round_ == 0 else None
            runs[key].append(_spawn(key, width, height, scale, args, dtype, save))
    skipped = {"skipped": "infeasible (needs about "
               f"{_gib(straightforward_estimate(width, height))})"}
    row = {key: (_combine(runs[key]) if runs[key] else skipped) for key in keys}
    if "seconds" in row["fast"] and "seconds" in row["straightforward"]:
        row["max_abs_diff"] = float(np.abs(np.load(saved["fast"])
                                           - np.load(saved["straightforward"])).max())
    fp32_fast = saved["fast"].replace(f"-{dtype}-", "-float32-")
    if dtype != "float32" and "seconds" in row["fast"] and os.path.exists(fp32_fast):
        row["psnr_vs_float32"] = _psnr(np.load(saved["fast"]), np.load(fp32_fast))
    return row


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two outputs clamped to [0, 1]: how much a lower precision changes the result."""
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def _table_row(row: dict, memory_key: str, keys: list[str]) -> str:
    fast, plain = row["fast"], row["straightforward"]
    cells = [f"{row['width']}x{row['height']}", f"x{row['scale']}", row["dtype"]]
    if "error" in fast:
        return "| " + " | ".join(cells + [f"fast failed: {fast['error']}"]) + " |"
    gflops = fast["flops"] / fast["seconds"] / 1e9
    cells.append(f"{fast['seconds']:.2f}")
    for key in keys[1:]:
        other = row[key]
        if "seconds" in other:
            compiled = (f" ({other['compile_seconds']:.0f})"
                        if other.get("compile_seconds") is not None else "")
            cells += [f"{other['seconds']:.2f}{compiled}",
                      f"{fast['seconds'] / other['seconds']:.2f}x"]
        else:
            cells += [other.get("skipped", f"failed: {other.get('error')}"), "-"]
    cells.append(_gib(fast[memory_key]))
    if memory_key in plain:
        cells += [_gib(plain[memory_key]), f"{fast[memory_key] / plain[memory_key]:.2f}x"]
    else:
        cells += ["-", "-"]
    cells.append(f"{row['max_abs_diff']:.1e}" if "max_abs_diff" in row else "-")
    if "psnr_vs_float32" in row:  # a lower precision: how far from the float32 fast output
        cells[-1] += f"; {row['psnr_vs_float32']:.1f} dB vs float32"
    cells.append(f"{gflops:.1f}")
    for ceiling in ("matmul_sustained_gflops", "matmul_gflops"):
        fractions, rates = fast[ceiling + "_fractions"], fast[ceiling + "_rounds"]
        cells.append(f"{100 * fractions[-1]:.0f}% ({100 * statistics.median(fractions):.0f}%) "
                     f"of {min(rates):.0f}-{max(rates):.0f}")
    paired = fast["paired_fractions"]
    cells.append(f"{100 * statistics.median(paired):.0f}% ({100 * paired[0]:.0f}-"
                 f"{100 * paired[-1]:.0f}%, {len(paired)} passes)")
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    sys.exit(main())
