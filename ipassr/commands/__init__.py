"""One module per ``ipassr`` subcommand, plus the options several of them share: the weights
(``add_weights_arguments``), where and how the network runs (``add_device_arguments``), and the
model they name (``model_from_args``). Importing this module does not import torch.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Callable

from ..errors import IpassrError
from ..devices import PRECISION_NAMES
from ..models.registry import network_names, registered_networks, size_names
from ..sizes import parse_memory_size


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


def add_command(subparsers, run: Callable[[argparse.Namespace], int], doc: str, *,
                weights: bool = True) -> argparse.ArgumentParser:
    """A subcommand's parser from its module's docstring (``doc``): a first line
    '``ipassr NAME``: summary.' (the summary is its line in ``ipassr --help``), then the
    paragraph of its own --help. It runs ``run``; the weights options come unless ``weights``
    is False."""
    first, _, rest = doc.strip().partition("\n")
    name, summary = re.fullmatch(r"``ipassr (\S+)``: (.+?)\.?", first).groups()
    parser = subparsers.add_parser(name, help=summary, description=" ".join(rest.split()))
    parser.set_defaults(run=run)
    if weights:
        add_weights_arguments(parser)
    return parser


def add_pair_arguments(parser: argparse.ArgumentParser, *, required: bool = True,
                       note: str = "") -> None:
    """``--left`` and ``--right``: the two LR views of one pair (``note`` completes the help)."""
    for side in ("left", "right"):
        parser.add_argument(f"--{side}", type=Path, required=required,
                            help=f"LR {side} view, an image file{note}")


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


memory_size = option_type(parse_memory_size)  # --max-memory: '4G', '512M' or bytes


def add_device_arguments(parser: argparse.ArgumentParser, *, dtype: bool = True,
                         max_memory: bool = True) -> None:
    """``--device``, and unless left out ``--dtype`` and ``--max-memory``: where and how the
    network runs."""
    parser.add_argument("--device", default="cpu",
                        help="torch device: cpu, cuda, cuda:N or auto (default: cpu)")
    if dtype:
        parser.add_argument("--dtype", choices=PRECISION_NAMES, default="float32",
                            help="network precision: bfloat16 or float16 for speed on a GPU (the "
                                 "attention softmax and valid masks stay float32; default "
                                 "float32)")
    if max_memory:
        parser.add_argument("--max-memory", type=memory_size,
                            help="activation memory budget per forward pass, e.g. 2G or 512M "
                                 "(default 4G on the CPU, half the available memory on a GPU); "
                                 "larger images run in chunks and bands, same results")


def weights_from_args(args: argparse.Namespace, scale: int | None = None) -> Path:
    """The weights file that ``--weights`` / ``--scale`` name (``scale`` overrides --scale)."""
    from ..inference.api import resolve_weights

    return resolve_weights(args.weights, args.scale if scale is None else scale, cli=True)


def model_from_args(args: argparse.Namespace, weights: Path | None = None,
                    scale: int | None = None, **options: Any):
    """The ``StereoSR`` that the weights and device options name (``weights`` / ``scale``
    override them, ``options`` override or add ``load_model`` keywords)."""
    from ..inference.api import load_model

    scale = args.scale if scale is None else scale
    keywords = {"scale": scale, "device": args.device, "dtype": getattr(args, "dtype", "float32"),
                "max_memory": getattr(args, "max_memory", None), **network_options(args)}
    return load_model(weights or weights_from_args(args, scale), **{**keywords, **options})
