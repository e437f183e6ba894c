"""``ipassr visualize``: draw valid masks, attention maps, disparity and a comparison image.

Super-resolve one LR stereo pair and write PNGs: the valid masks V_L, V_R over the image, the
attention maps of one row, the disparity read off the attention, and a bicubic / SR (/ HR)
comparison with a zoomed crop.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_command, add_device_arguments, add_pair_arguments, model_from_args
from ..errors import IpassrError


def add_parser(subparsers) -> None:
    parser = add_command(subparsers, run, __doc__)
    add_pair_arguments(parser)
    parser.add_argument("--hr-left", type=Path, help="HR left view, adds a ground-truth panel")
    parser.add_argument("--row", type=int, help="image row whose attention maps to draw "
                        "(default: the middle row)")
    parser.add_argument("--crop", help="zoomed region X,Y,W,H in SR pixels (default: centre)")
    parser.add_argument("--output-dir", type=Path, required=True, help="where to write the PNGs")
    add_device_arguments(parser)


def parse_crop(text: str | None) -> tuple[int, int, int, int] | None:
    """'X,Y,W,H' -> a tuple of four ints."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise IpassrError(f"--crop {text!r}: expected X,Y,W,H (four integers)")
    return values  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    from ..data.io import read_image, read_stereo_pair
    from ..visualize import visualize_pair  # torch: not for --help

    crop = parse_crop(args.crop)
    left, right = read_stereo_pair(args.left, args.right)
    hr_left = read_image(args.hr_left) if args.hr_left is not None else None
    model = model_from_args(args)
    result = visualize_pair(model, left, right, row=args.row, hr_left=hr_left, crop=crop)
    paths = result.save(args.output_dir)
    print(f"wrote {len(paths)} images to {args.output_dir}")
    return 0
