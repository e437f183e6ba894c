"""Every network ipassr runs, side by side: parameters, FLOPs, time and peak memory per pair.

PASSRnet, iPASSR and NAFSSR-T/S/B/L (random weights: speed does not depend on them) at KITTI
sizes (LR 310x93 at x4, 621x187 at x2), each run two ways in its own subprocess so that peak
memory is its own:

* fast: as ``ipassr infer`` runs it (``StereoSR``: iPASSR's fused, memory-bounded path; for the
  others their forward with the attention in 32 MiB row chunks), with the CLI's runtime settings:
  CPU subnormals flushed, and huge pages for iPASSR (``ipassr.startup``: they slowed the others);
* straightforward: the plain module forward in ``torch.no_grad`` with the full (B, H, W, W)
  attention maps at once (iPASSR: ``bench/infer.py``'s reference-style forward), without the
  CLI's runtime settings, as the official code runs.

Time is the best of ``--passes`` passes after ``--warmup`` untimed ones (default 1); peak memory
is the rise of the process's maximum RSS over the passes, above what loading the network took. FLOPs are counted with
``torch.utils.flop_counter`` on an 8-row strip and scaled by the height (every layer and every
attention row costs the same per image row). Both views are super-resolved in both paths (PASSRnet:
the official left-view pass twice, the second on the mirrored pair).

    python bench/zoo.py                         # all networks, both sizes
    python bench/zoo.py --networks nafssr-t,passrnet --sizes 310x93:4 --passes 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipassr.startup import huge_pages_help  # noqa: E402  (torch-free)

NETWORKS = ("passrnet", "ipassr", "nafssr-t", "nafssr-s", "nafssr-b", "nafssr-l")
DEFAULT_SIZES = "310x93:4,621x187:2"


def build(name: str, scale: int):
    """A random-weight network of this name ('nafssr-t': NAFSSR-T) and scale, in eval mode."""
    import torch

    from ipassr.models.registry import build_network

    torch.manual_seed(0)
    network, _, size = name.partition("-")
    return build_network(network, scale, size.upper() or None).eval()


def count_flops(network, width: int, height: int) -> float:
    """FLOPs of one pair (both views), from an 8-row strip scaled to ``height`` rows."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    strip = min(8, height)
    left, right = torch.rand(1, 3, strip, width), torch.rand(1, 3, strip, width)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(left, right)
    return counter.get_total_flops() * height / strip


def straightforward(network, left, right):
    """The plain forward, full attention maps at once."""
    import torch

    from ipassr.models.ipassr import IPASSR

    if isinstance(network, IPASSR):
        sys.path.insert(0, str(ROOT / "bench"))
        from infer import straightforward_forward

        return straightforward_forward(network, left, right)
    network.set_attention_memory(2 ** 62)
    with torch.no_grad():
        return network(left, right)


def worker(args: argparse.Namespace) -> dict:
    import torch

    from ipassr.inference.fast.attention import subnormals_flushed
    from ipassr.inference.api import StereoSR

    torch.set_num_threads(args.threads)
    network = build(args.network, args.scale)
    left, right = torch.rand(1, 3, args.height, args.width), torch.rand(1, 3, args.height,
                                                                        args.width)
    if args.path == "fast":
        model = StereoSR(network, max_memory=args.max_memory or None)
        run = lambda: model.super_resolve_tensors(left, right)  # noqa: E731
    else:
        run = lambda: straightforward(network, left, right)  # noqa: E731
    # the fast path runs as the CLI runs every command: subnormals flushed to zero
    settings = subnormals_flushed() if args.path == "fast" else contextlib.nullcontext()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with settings:
        for _ in range(args.warmup):
            run()  # untimed: kernels built, buffers sized
        times = []
        for _ in range(args.passes):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    return {"seconds": min(times), "peak_bytes": peak,
            "params": sum(p.numel() for p in network.parameters()),
            "gflops": count_flops(network, args.width, args.height) / 1e9}


def spawn(network: str, path: str, width: int, height: int, scale: int,
          args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if path == "fast" and huge_pages_help(["--arch", network.split("-")[0]]):
        env["THP_MEM_ALLOC_ENABLE"] = "1"  # what the ipassr CLI sets before torch starts
    command = [sys.executable, __file__, "--worker", "--network", network, "--path", path,
               "--width", str(width), "--height", str(height), "--scale", str(scale),
               "--passes", str(args.passes), "--threads", str(args.threads),
               "--warmup", str(args.warmup)]
    if args.max_memory:
        command += ["--max-memory", str(args.max_memory)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="WxH:scale,...")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed passes first (0 for networks whose pass takes minutes)")
    parser.add_argument("--max-memory", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("network", "path"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    for name in ("width", "height", "scale"):
        parser.add_argument(f"--{name}", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.path == "fast":
            import torch

            torch.set_flush_denormal(True)
        print(json.dumps(worker(args)))
        return 0
    rows = []
    print("| network | params | LR size, scale | GFLOP/pair | fast s | straightforward s | time "
          "ratio | fast peak GiB | straightforward peak GiB | memory ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        dims, scale = size.split(":")
        width, height = (int(v) for v in dims.split("x"))
        for network in args.networks.split(","):
            fast = spawn(network, "fast", width, height, int(scale), args)
            plain = spawn(network, "straightforward", width, height, int(scale), args)
            rows.append({"network": network, "width": width, "height": height,
                         "scale": int(scale), "fast": fast, "straightforward": plain})
            if "error" in fast or "error" in plain:
                print(f"| {network} | | {width}x{height} x{scale} | | {fast.get('error', '')} | "
                      f"{plain.get('error', '')} | | | | |", flush=True)
                continue
            gib = 2 ** 30
            print(f"| {network} | {fast['params'] / 1e6:.2f}M | {width}x{height} x{scale} | "
                  f"{fast['gflops']:.0f} | {fast['seconds']:.2f} | {plain['seconds']:.2f} | "
                  f"{fast['seconds'] / plain['seconds']:.2f}x | {fast['peak_bytes'] / gib:.2f} | "
                  f"{plain['peak_bytes'] / gib:.2f} | "
                  f"{fast['peak_bytes'] / max(plain['peak_bytes'], 1):.2f}x |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
