"""``ipassr visualize``: valid masks, an attention row, attention disparity and a comparison."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_weights_arguments, network_options, option_type
from ..errors import IpassrError
from ..sizes import parse_memory_size


memory_size = option_type(parse_memory_size)  # --max-memory: '4G', '512M' or bytes


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "visualize", help="draw valid masks, attention maps, disparity and a comparison image",
        description="Super-resolve one LR stereo pair and write PNGs: the valid masks V_L, V_R "
                    "over the image, the attention maps of one row, the disparity read off the "
                    "attention, and a bicubic / SR (/ HR) comparison with a zoomed crop.")
    add_weights_arguments(parser)
    parser.add_argument("--left", type=Path, required=True, help="LR left view")
    parser.add_argument("--right", type=Path, required=True, help="LR right view")
    parser.add_argument("--hr-left", type=Path, help="HR left view, adds a ground-truth panel")
    parser.add_argument("--row", type=int, help="image row whose attention maps to draw "
                        "(default: the middle row)")
    parser.add_argument("--crop", help="zoomed region X,Y,W,H in SR pixels (default: centre)")
    parser.add_argument("--output-dir", type=Path, required=True, help="where to write the PNGs")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--max-memory", type=memory_size,
                        help="activation memory budget, e.g. 4G (default 4G on the CPU, half "
                             "the available memory on a GPU)")
    parser.set_defaults(run=run)


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
    from ..inference.api import load_model  # torch: not for --help
    from ..visualize import visualize_pair

    crop = parse_crop(args.crop)
    left, right = read_stereo_pair(args.left, args.right)
    hr_left = read_image(args.hr_left) if args.hr_left is not None else None
    model = load_model(args.weights, scale=args.scale, device=args.device,
                       max_memory=args.max_memory, **network_options(args))
    result = visualize_pair(model, left, right, row=args.row, hr_left=hr_left, crop=crop)
    paths = result.save(args.output_dir)
    print(f"wrote {len(paths)} images to {args.output_dir}")
    return 0
