"""A/B timing of ipassr's inference between two git revisions, interleaved in one run.

Refactors promise "no slowdown"; on a shared, noisy machine that can only be shown side by side.
Each revision is checked out (``git worktree``) into a temporary folder; every round runs one
subprocess per revision, in alternating order (A B, B A, ...), and each subprocess times
``--passes`` passes of ``StereoSR.super_resolve_tensors`` (the same weights file for both: revision
A's shipped weights by default; a random pair; after one untimed pass) with that revision's code, as the CLI runs it (subnormals flushed, huge pages).
With ``--pair L R`` each pass is ``StereoSR.super_resolve_files`` on those image files instead
(reading, the network, the grey step, rounding and writing PNGs), and the outputs compared are
the written images (mode and pixels).
The report gives each revision's median over rounds of its best pass, the ratio B / A, and
whether the two revisions' outputs are bit-identical.

    python bench/ab.py feb93d2 HEAD                      # KITTI x4 (LR 310x93), 5 rounds
    python bench/ab.py feb93d2 HEAD --size 621x187:2 --rounds 3 --threads 2
    python bench/ab.py feb93d2 HEAD --rounds 1 --max-memory 150000000   # banded passes
    python bench/ab.py main HEAD --pair left.png right.png               # files in, files out
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import hashlib, json, sys, tempfile, time
from pathlib import Path
import numpy as np
from PIL import Image
import torch
import ipassr
package = Path(ipassr.__file__).parent
if (package / "inference" / "fast").is_dir():
    from ipassr.inference.fast.attention import subnormals_flushed
elif (package / "fast").is_dir():  # before the subpackages
    from ipassr.fast.attention import subnormals_flushed
else:  # before the fast path became a subpackage
    from ipassr.chunked import subnormals_flushed
width, height, scale, passes, threads = map(int, sys.argv[1:6])
weights = sys.argv[6]
max_memory = int(sys.argv[7]) or None
torch.set_num_threads(threads)
model = ipassr.load_model(  # the top-level name: every layout has it
    weights, scale=scale, max_memory=max_memory)
generator = torch.Generator().manual_seed(0)
left, right = (torch.rand(1, 3, height, width, generator=generator) for _ in range(2))
folder = Path(tempfile.mkdtemp())
outputs = [folder / "sr_left.png", folder / "sr_right.png"]


def run_pass():
    if len(sys.argv) > 9:  # --pair: files in, files out
        model.super_resolve_files(sys.argv[8], sys.argv[9], *outputs)
        images = [Image.open(path) for path in outputs]
        return [image.mode.encode() + np.asarray(image).tobytes() for image in images]
    return [t.contiguous().numpy().tobytes() for t in model.super_resolve_tensors(left, right)]


times = []
with subnormals_flushed():
    out = run_pass()
    for _ in range(passes):
        started = time.perf_counter()
        run_pass()
        times.append(time.perf_counter() - started)
digest = hashlib.sha256(b"".join(out)).hexdigest()
print(json.dumps({"seconds": min(times), "digest": digest, "package": str(package)}))
"""


@contextlib.contextmanager
def checkout(revision: str):
    """A temporary worktree of ``revision``, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="ipassr-ab-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), revision],
                   check=True, capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)],
                       capture_output=True)


def time_once(tree: Path, weights_tree: Path, args: argparse.Namespace) -> dict:
    """One subprocess with ``tree``'s ipassr on the path: its best pass and output digest."""
    width, rest = args.size.split("x")
    height, scale = rest.split(":")
    env = {**os.environ, "PYTHONPATH": str(tree), "THP_MEM_ALLOC_ENABLE": "1"}
    weights = args.weights or weights_tree / "ipassr" / "weights" / f"ipassr_x{scale}.safetensors"
    done = subprocess.run([sys.executable, "-c", WORKER, width, height, scale, str(args.passes),
                           str(args.threads), str(weights), str(args.max_memory),
                           *[str(Path(p).resolve()) for p in args.pair or ()]], env=env, capture_output=True,
                          text=True, cwd=tree)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: worker failed: {done.stderr.strip().splitlines()[-1]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["package"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{tree}: the worker imported ipassr from {result['package']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="the baseline revision")
    parser.add_argument("b", help="the revision compared with it")
    parser.add_argument("--size", default="310x93:4", help="LR WxH:scale")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-memory", type=int, default=0,
                        help="bytes of activations per pass (small values force banded passes)")
    parser.add_argument("--weights", type=Path,
                        help="one weights file for both (default: revision A's shipped ones, which "
                        "newer code reads too)")
    parser.add_argument("--pair", nargs=2, metavar=("LEFT", "RIGHT"),
                        help="time super_resolve_files on these image files (--size gives only "
                        "the scale) and compare the images written")
    args = parser.parse_args(argv)
    with checkout(args.a) as tree_a, checkout(args.b) as tree_b:
        trees = {"A": tree_a, "B": tree_b}
        seconds: dict[str, list[float]] = {"A": [], "B": []}
        digests: dict[str, set[str]] = {"A": set(), "B": set()}
        for round_ in range(args.rounds):
            for name in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
                result = time_once(trees[name], tree_a, args)
                seconds[name].append(result["seconds"])
                digests[name].add(result["digest"])
            print(f"round {round_ + 1}: A {seconds['A'][-1]:.3f} s, B {seconds['B'][-1]:.3f} s",
                  flush=True)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    identical = digests["A"] == digests["B"] and len(digests["A"]) == 1
    print(f"A = {args.a}: median {median['A']:.3f} s; B = {args.b}: median {median['B']:.3f} s; "
          f"B / A = {median['B'] / median['A']:.3f} (size {args.size}, {args.rounds} rounds, "
          f"{args.threads} threads); outputs {'bit-identical' if identical else 'DIFFER'}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
