"""``ipassr demo``: super-resolve a real stereo pair and compare with bicubic.

With no arguments: make LR views of the Middlebury Motorcycle pair (scikit-image) with MATLAB-exact
bicubic, super-resolve them with the shipped weights, and write the SR pair, a bicubic / iPASSR /
ground truth comparison, the valid masks and a short report to ./ipassr-demo/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import (add_command, add_device_arguments, add_pair_arguments, model_from_args,
               weights_from_args)
from ..errors import IpassrError


def add_parser(subparsers) -> None:
    parser = add_command(subparsers, run, __doc__)
    add_pair_arguments(parser, required=False, note=" (default: the Motorcycle pair)")
    parser.add_argument("--output-dir", type=Path, default=Path("ipassr-demo"))
    add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..demo import correspondence_line, motorcycle_pair, own_pair, run_demo

    if (args.left is None) != (args.right is None):
        raise IpassrError("give both --left and --right, or neither for the built-in pair")
    scale = args.scale if args.scale is not None or args.weights is not None else 2
    weights = weights_from_args(args, scale)
    model = model_from_args(args, weights, scale)
    pair = own_pair(args.left, args.right) if args.left else motorcycle_pair(model.scale)
    result = run_demo(model, pair, args.output_dir, str(args.weights or weights.name))
    print(f"super-resolved {pair.name} x{model.scale} in {result.seconds:.2f} s")
    for method, score in result.scores.items():
        print(f"  {method:8s} (Left+Right)/2 PSNR {score['stereo_psnr']:.2f} dB, "
              f"SSIM {score['stereo_ssim']:.4f}")
    if result.correspondence is not None:
        print(f"  {correspondence_line(result.correspondence)}")
    print(f"wrote to {args.output_dir}/:")
    for name, path in result.files.items():
        print(f"  {path.name:16s} {name.replace('_', ' ')}")
    return 0
