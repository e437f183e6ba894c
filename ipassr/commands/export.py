"""``ipassr export``: export the network to ONNX or TorchScript.

Export the network (eval mode) with dynamic batch, height and width, then check that the exported
file reproduces PyTorch at another size (ONNX needs onnx and onnxruntime: pip install
'ipassr[export]').
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_command, network_options, weights_from_args
from ..errors import IpassrError
from ..data.io import check_writable_folder
from ..inference import EXPORT_FORMATS as FORMATS


def add_parser(subparsers) -> None:
    parser = add_command(subparsers, run, __doc__)
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="default: onnx")
    parser.add_argument("--output", type=Path, required=True, help="file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--no-check", action="store_true",
                        help="skip running the exported file against PyTorch")


def run(args: argparse.Namespace) -> int:
    if args.output.is_dir():
        raise IpassrError(f"--output {args.output}: is a folder; give a file name")
    if args.output.exists() and not args.overwrite:
        raise IpassrError(f"--output {args.output}: already exists (use --overwrite to replace it)")
    check_writable_folder(args.output.parent)
    from ..inference.export import export_model  # torch: not for --help
    from ..models.checkpoint import load_network

    network = load_network(weights_from_args(args), scale=args.scale,
                           **network_options(args))
    error = export_model(network, args.output, args.format, check=not args.no_check)
    checked = "" if error is None else f"; matches PyTorch to {error:.1e}"
    print(f"wrote {args.output} ({args.format}, x{network.scale}, inputs left/right "
          f"(batch, 3, height, width){checked})")
    return 0
