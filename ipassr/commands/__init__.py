"""One module per ``ipassr`` subcommand, plus the options several of them share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from ..errors import IpassrError


def option_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` from a parser that raises IpassrError: a bad value is then a usage
    error of its option (one line, exit 2) instead of a traceback."""
    def parse_option(text: str) -> Any:
        try:
            return parse(text)
        except IpassrError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse_option.__name__ = getattr(parse, "__name__", "value")
    return parse_option


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    """``--weights`` and ``--scale``: a weights file, or the shipped weights for a scale."""
    parser.add_argument("--weights", type=Path, help="weights file (.pth.tar or .safetensors); "
                        "default: the shipped weights for --scale")
    parser.add_argument("--scale", type=int, help="upscaling factor (checked against --weights)")
