"""``ipassr evaluate``: score methods on test sets with the paper's protocol.

Score one or more methods on every dataset folder of --dataset-root (<Dataset>/hr/<scene>/hr0.png,
hr1.png and lr_x<S>/<scene>/lr0.png, lr1.png, as 'ipassr prepare testset' writes) and print a
table in the paper's format (Table 4): per dataset 'Left' (64 leftmost columns cropped) and
'(Left+Right)/2' PSNR/SSIM. A method is --weights (run the network), --sr-dir (results on disk as
D/<Dataset>/<scene>_L.png, _R.png) or --bicubic; give each as LABEL=PATH to name its row.
--disparity adds the Table-5 figures (StereoSGBM on HR, bicubic and SR pairs against ground
truth); without --dataset-root it uses scikit-image's Motorcycle pair.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from typing import TYPE_CHECKING

from tqdm import tqdm

from . import add_command, add_device_arguments
from ..errors import IpassrError

if TYPE_CHECKING:  # torch: imported when a command runs, not for --help
    from ..evaluation.protocol import Method, WeightsMethod


def add_parser(subparsers) -> None:
    """Register ``ipassr evaluate``."""
    parser = add_command(subparsers, run, __doc__, weights=False)
    parser.add_argument("--dataset-root", type=Path, metavar="ROOT", help="folder of test-set folders")
    parser.add_argument("--scale", type=int, required=True, help="upscaling factor (2 or 4)")
    parser.add_argument("--weights", action="append", default=[], metavar="[LABEL=]FILE",
                        help="network weights to run (repeatable)")
    parser.add_argument("--sr-dir", action="append", default=[], metavar="[LABEL=]DIR",
                        help="SR results on disk, DIR/<Dataset>/<scene>_L.png, _R.png (repeatable)")
    parser.add_argument("--bicubic", action="store_true", help="MATLAB-exact bicubic upsampling baseline")
    parser.add_argument("--datasets", nargs="+", metavar="NAME", help="only these dataset folders")
    parser.add_argument("--disparity", action="store_true",
                        help="also score disparity estimation on HR, bicubic and SR pairs (needs ipassr[stereo])")
    parser.add_argument("--attention", action="store_true",
                        help="also score biPAM's correspondences (disparity read from the attention "
                             "maps) against ground-truth disparity; without --dataset-root on "
                             "scikit-image's Motorcycle pair")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write per-dataset and per-scene figures")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write the table(s) as Markdown")
    add_device_arguments(parser)


def _split_label(value: str) -> tuple[str, Path]:
    """'LABEL=PATH' -> (LABEL, PATH); a plain path (even one containing '=') -> ('', PATH)."""
    label, sep, rest = value.partition("=")
    if sep and label and "/" not in label and not Path(value).exists():
        return label, Path(rest)
    return "", Path(value)


def _methods(args: argparse.Namespace) -> list[Method]:
    """The methods to score, in command-line order: bicubic, weights, SR folders."""
    from ..evaluation.protocol import BicubicMethod, SrDirMethod, WeightsMethod
    from ..inference.api import resolve_weights, shipped_name_scale

    methods: list[Method] = [BicubicMethod(args.scale)] if args.bicubic else []
    for value in args.weights:
        label, path = _split_label(value)
        if shipped_name_scale(path) is not None:
            path = resolve_weights(path, args.scale, cli=True)
            label = label or f"shipped x{args.scale}"
        if not path.is_file():
            raise IpassrError(f"--weights {path}: no such file")
        methods.append(WeightsMethod(path, args.scale, args.device, label, dtype=args.dtype,
                                     max_memory=args.max_memory))
    for value in args.sr_dir:
        label, path = _split_label(value)
        methods.append(SrDirMethod(path, label))
    return methods


def _attention_networks(methods: list[Method]) -> list[WeightsMethod]:
    """The --weights methods whose network has biPAM (``--attention`` scores only those)."""
    from ..evaluation.protocol import WeightsMethod

    networks = [m for m in methods if isinstance(m, WeightsMethod)]
    if not networks:
        raise IpassrError("--attention scores a network's attention maps: give --weights")
    others = [m.label for m in networks if not m.model.spec.attention_maps]
    if others:
        raise IpassrError(f"--attention scores biPAM-style attention maps (iPASSR's); "
                          f"{', '.join(others)} gives none")
    without = [m.label for m in networks if not m.model.has_attention]
    if without:
        raise IpassrError(f"--attention: {', '.join(without)} has no parallax attention "
                          "(a single-view network)")
    return networks


def _with_ground_truth(datasets: list) -> list:
    """The datasets' scenes that have ground-truth disparity, datasets without any left out."""
    with_gt = [(name, [s for s in scenes if s.disparity is not None]) for name, scenes in datasets]
    return [(name, scenes) for name, scenes in with_gt if scenes]


def _progress(unit: str):
    """A tqdm wrapper: one bar per dataset, one step per scene."""
    return lambda items, name: tqdm(list(items), desc=name, unit=unit)


def run(args: argparse.Namespace) -> int:
    """Score, print the table(s), write --json / --markdown."""
    from ..evaluation.correspondence import (evaluate_attention, format_attention_markdown,
                                             format_attention_table)
    from ..evaluation.disparity_benefit import (MOTORCYCLE, check_ground_truth_sizes,
                                                disparity_cases, evaluate_disparity,
                                                format_disparity_markdown, format_disparity_table,
                                                motorcycle_case)
    from ..evaluation.protocol import (WeightsMethod, evaluate, find_datasets, format_markdown,
                                       format_table, write_json, write_text)

    if args.scale < 1:
        raise IpassrError(f"--scale must be a positive integer, got {args.scale}")
    if args.dataset_root is None and not (args.disparity or args.attention):
        raise IpassrError("give --dataset-root (or --disparity / --attention alone for the "
                          "Motorcycle pair)")
    methods = _methods(args)
    for method in methods:
        if isinstance(method, WeightsMethod):
            method.load()   # fail on a bad checkpoint before any scoring
    networks = _attention_networks(methods) if args.attention else []
    output: dict = {"scale": args.scale}
    markdown: list[str] = []
    datasets = []
    if args.dataset_root is not None:
        datasets = find_datasets(args.dataset_root, args.scale)
        if args.datasets:
            unknown = sorted(set(args.datasets) - {name for name, _ in datasets})
            if unknown:
                raise IpassrError(f"--datasets {', '.join(unknown)}: not in {args.dataset_root} "
                                  f"(found {', '.join(name for name, _ in datasets)})")
            datasets = [(name, scenes) for name, scenes in datasets if name in args.datasets]
        if args.attention and not _with_ground_truth(datasets):
            raise IpassrError(f"--attention: no scene of {args.dataset_root} has ground-truth "
                              "disparity (hr/<scene>/disp0.pfm or disp0.png); without "
                              "--dataset-root it scores scikit-image's Motorcycle pair")
        if args.attention or args.disparity:
            check_ground_truth_sizes(_with_ground_truth(datasets))
        report = evaluate(datasets, methods, args.scale, progress=_progress("scene"))
        print(format_table(report))
        output = report.to_dict()
        markdown.append(format_markdown(report))
    if args.disparity:
        with_gt = _with_ground_truth(datasets)
        if with_gt:
            cases = disparity_cases(with_gt)
        else:
            if datasets:
                print("note: no scene has ground-truth disparity (hr/<scene>/disp0.pfm); "
                      "using scikit-image's Motorcycle pair")
            cases = [motorcycle_case(args.scale)]
            missing = [m for method in methods for m in method.missing(MOTORCYCLE[0], [cases[0].scene])]
            if missing:
                raise IpassrError(f"SR result(s) missing for the Motorcycle pair: {', '.join(missing)}")
        result = evaluate_disparity(cases, methods, args.scale, progress=_progress("scene"))
        print()
        print(format_disparity_table(result))
        output["disparity"] = result
        markdown.append(format_disparity_markdown(result) + "\n")
    if args.attention:
        cases = (disparity_cases(_with_ground_truth(datasets)) if datasets
                 else [motorcycle_case(args.scale)])
        result = evaluate_attention(cases, networks, args.scale, progress=_progress("scene"))
        print()
        print(format_attention_table(result))
        output["attention"] = result
        markdown.append(format_attention_markdown(result))
    if args.json is not None:
        write_json(args.json, output)
        print(f"wrote {args.json}")
    if args.markdown is not None:
        write_text(args.markdown, "\n".join(markdown))
        print(f"wrote {args.markdown}")
    return 0
