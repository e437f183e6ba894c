"""``ipassr demo``: super-resolve a real stereo pair and show what stereo SR does."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_weights_arguments, network_options
from ..errors import IpassrError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="super-resolve a real stereo pair and compare with bicubic",
        description="With no arguments: make LR views of the Middlebury Motorcycle pair "
                    "(scikit-image) with MATLAB-exact bicubic, super-resolve them with the "
                    "shipped weights, and write the SR pair, a bicubic / iPASSR / ground truth "
                    "comparison, the valid masks and a short report to ./ipassr-demo/.")
    add_weights_arguments(parser)
    parser.add_argument("--left", type=Path, help="your own left view (used as LR input)")
    parser.add_argument("--right", type=Path, help="your own right view")
    parser.add_argument("--output-dir", type=Path, default=Path("ipassr-demo"))
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import motorcycle_pair, own_pair, run_demo
    from ..inference.api import load_model, resolve_weights

    if (args.left is None) != (args.right is None):
        raise IpassrError("give both --left and --right, or neither for the built-in pair")
    scale = args.scale if args.scale is not None or args.weights is not None else 2
    weights = resolve_weights(args.weights, scale)
    model = load_model(weights, scale=scale, device=args.device, **network_options(args))
    pair = own_pair(args.left, args.right) if args.left else motorcycle_pair(model.scale)
    result = run_demo(model, pair, args.output_dir, str(args.weights or weights.name))
    print(f"super-resolved {pair.name} x{model.scale} in {result.seconds:.2f} s")
    for method, score in result.scores.items():
        print(f"  {method:8s} (Left+Right)/2 PSNR {score['stereo_psnr']:.2f} dB, "
              f"SSIM {score['stereo_ssim']:.4f}")
    print(f"wrote to {args.output_dir}/:")
    for name, path in result.files.items():
        print(f"  {path.name:16s} {name.replace('_', ' ')}")
    return 0
