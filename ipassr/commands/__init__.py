"""One module per ``ipassr`` subcommand, plus the options several of them share."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    """``--weights`` and ``--scale``: a weights file, or the shipped weights for a scale."""
    parser.add_argument("--weights", type=Path, help="weights file (.pth.tar or .safetensors); "
                        "default: the shipped weights for --scale")
    parser.add_argument("--scale", type=int, help="upscaling factor (checked against --weights)")
