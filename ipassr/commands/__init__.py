"""One module per ``ipassr`` subcommand, plus the options several of them share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from ..errors import IpassrError
from ..models.registry import network_names, registered_networks, size_names


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
    """``--weights``, ``--scale``, ``--arch`` and ``--model-size``: a weights file, or the shipped
    weights for a scale; the network and size choices are the registry's."""
    labels = [spec.display_name for spec in registered_networks().values()]
    sized = [spec.display_name for spec in registered_networks().values() if spec.sizes]
    parser.add_argument("--weights", type=Path,
                        help=f"weights file (.pth.tar, .pth or .safetensors) of {', '.join(labels)}, "
                             "or x2 / x4 for the shipped ones (default: the shipped "
                             "weights for --scale)")
    parser.add_argument("--scale", type=int, help="upscaling factor (checked against --weights)")
    parser.add_argument("--arch", choices=network_names(),
                        help="the network in --weights (default: read off the file; checked)")
    parser.add_argument("--model-size", choices=size_names(),
                        help=f"the size of {', '.join(sized)} (default: read off the file; "
                             "checked)")


def network_options(args: argparse.Namespace) -> dict:
    """``load_model``'s architecture/size keywords from ``add_weights_arguments``' options."""
    return {"architecture": getattr(args, "arch", None), "size": getattr(args, "model_size", None)}
