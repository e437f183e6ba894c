"""``ipassr infer``: super-resolve a stereo pair or a folder of pairs.

Super-resolve a stereo pair (--left/--right, or --input: an MPO, JPS or spatial HEIC photo, or a
side-by-side or top-bottom picture with --layout) into two files (--output-left/--output-right)
or one (--output: .mpo, .jps, or a picture in --output-layout), or every pair of --input-dir:
scene subfolders holding lr0.png = left and lr1.png = right, <name>_L.png / <name>_R.png files,
or stereo photos. Folder runs skip pairs whose outputs exist, carry on past bad pairs and list
them at the end; under torchrun each process takes its share of the pairs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from . import add_command, add_device_arguments, add_pair_arguments, model_from_args
from ..data.datasets import PairFiles, scene_pairs, side_pairs
from ..data.io import check_writable_folder
from ..data.layouts import layout_names
from ..data.media import (JPS_SUFFIXES, PHOTO_SUFFIXES, StereoImage, StereoTarget, plan_target,
                          read_stereo, read_views, write_stereo)
from ..data.video import is_video_path
from .infer_video import add_video_arguments, run_video
from ..devices import env_from_environment
from ..errors import IpassrError

if TYPE_CHECKING:  # torch: not for --help
    from ..inference.api import StereoSR

LEFT_STEM, RIGHT_STEM = "lr0", "lr1"  # the views of a scene folder, as prepare testset writes


def add_parser(subparsers) -> None:
    parser = add_command(subparsers, run, __doc__)
    add_pair_arguments(parser, required=False)
    parser.add_argument("--input", type=Path,
                        help="one file holding both views: an MPO, JPS or spatial HEIC photo, a "
                             "picture in --layout, or a 3D video (.mp4, .mkv, .mov, .webm, ...)")
    parser.add_argument("--layout", metavar="L",
                        help="how --input's views sit: " + layout_names() + " (read from the file "
                             "for MPO, JPS and HEIC, and from a video's container where it says)")
    parser.add_argument("--output-left", type=Path, help="where to write the SR left view")
    parser.add_argument("--output-right", type=Path, help="where to write the SR right view")
    parser.add_argument("--output", type=Path,
                        help="one file for both SR views: .mpo, .jps, or a picture or (for a "
                             "video --input) a video in --output-layout (default: the input's "
                             "layout, else sbsl)")
    parser.add_argument("--output-layout", metavar="L",
                        help=f"layout of --output: {layout_names()} or anaglyph (red-cyan); a "
                             "full-size layout restores each eye's aspect from a half-size input")
    parser.add_argument("--input-dir", type=Path, help="folder of scene subfolders")
    parser.add_argument("--output-dir", type=Path, help="writes <scene>_L.png and <scene>_R.png")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs (without it a pair refuses them, and a "
                             "folder run skips the pairs whose two outputs exist)")
    add_device_arguments(parser)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the network for pairs whose full attention maps fit "
                             "--max-memory (compiles once per image size; slower than the "
                             "default path on a CPU, meant for trying on a GPU)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="with --input-dir: super-resolve up to this many pairs of equal "
                             "size together; with a video, frames (default 1)")
    add_video_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.input is not None and is_video_path(args.input):
        return run_video(args)
    single = {"--left": args.left, "--right": args.right, "--input": args.input,
              "--layout": args.layout, "--output-left": args.output_left,
              "--output-right": args.output_right, "--output": args.output,
              "--output-layout": args.output_layout}
    if args.input_dir is not None:
        given = [flag for flag, value in single.items() if value is not None]
        if given:
            raise IpassrError(f"use either --input-dir/--output-dir or {', '.join(given)}, not both")
        if args.output_dir is None:
            raise IpassrError("--input-dir needs --output-dir")
        if args.batch_size < 1:
            raise IpassrError(f"--batch-size must be at least 1, got {args.batch_size}")
        return run_folder(args)
    photo, inputs = read_input(args)
    target = plan_output(args, photo)
    check_outputs(inputs, target.paths)
    if not args.overwrite:
        for path in target.paths:
            if path.exists():
                raise IpassrError(f"{path}: already exists (use --overwrite to replace it)")
    model = model_from_args(args, compile=args.compile)
    write_stereo(target, model.super_resolve_photo(photo))
    print(f"wrote {target.describe()} (x{model.scale})")
    return 0


def read_input(args: argparse.Namespace) -> tuple[StereoImage, list[Path]]:
    """The pair to super-resolve: --input FILE (with --layout for a plain picture) or --left and
    --right; read before the network loads, so bad input costs nothing."""
    if args.input is not None:
        if args.left is not None or args.right is not None:
            raise IpassrError("use either --input (one file holding both views) or --left/--right")
        return read_stereo(args.input, args.layout), [args.input]
    if args.left is None or args.right is None:
        missing = [flag for flag, value in (("--left", args.left), ("--right", args.right))
                   if value is None]
        raise IpassrError(f"missing {', '.join(missing)} (or --input FILE for one file holding "
                          "both views, or --input-dir/--output-dir)")
    if args.layout is not None:
        raise IpassrError("--layout says how --input's views sit; --left/--right are one view each")
    return read_views(args.left, args.right), [args.left, args.right]


def plan_output(args: argparse.Namespace, photo: StereoImage) -> StereoTarget:
    """Where the SR pair goes: --output FILE, or --output-left and --output-right."""
    if args.output is not None:
        if args.output_left is not None or args.output_right is not None:
            raise IpassrError("use either --output (one file for both views) or "
                              "--output-left/--output-right")
        return plan_target(args.output, output_layout=args.output_layout,
                           source_layout=photo.layout)
    missing = [flag for flag, value in (("--output-left", args.output_left),
                                        ("--output-right", args.output_right)) if value is None]
    if missing:
        raise IpassrError(f"missing {', '.join(missing)} (or --output FILE for one file holding "
                          "both views)")
    return plan_target(output_left=args.output_left, output_right=args.output_right,
                       output_layout=args.output_layout)


def check_outputs(inputs: list[Path], outputs: list[Path]) -> None:
    """Before any compute, refuse outputs that would lose data or fail after the network ran:
    an unknown image format, a folder, an input file, the same file twice, an unwritable place."""
    from PIL import Image

    seen: dict[str, Path] = {}
    for path in inputs:
        seen.setdefault(os.path.realpath(path), path)
    named_inputs = set(seen)
    for path in outputs:
        if (path.suffix.lower() not in JPS_SUFFIXES
                and Image.registered_extensions().get(path.suffix.lower()) is None):
            raise IpassrError(f"{path}: unknown image format '{path.suffix}' (use .png)")
        if path.is_dir():
            raise IpassrError(f"{path}: is a folder; give an image file name")
        real = os.path.realpath(path)
        if real in seen:
            what = "an input" if real in named_inputs else "another output"
            raise IpassrError(f"{path}: is also {what} ({seen[real]}); refusing to overwrite it")
        seen[real] = path
        check_writable_folder(path.parent)


def output_paths(pair: PairFiles, folder: Path) -> tuple[Path, Path]:
    """Where a pair of a folder run is written: ``folder/<name>_L.png``, ``_R.png``."""
    return folder / f"{pair.name}_L.png", folder / f"{pair.name}_R.png"


def read_pair(pair: PairFiles) -> StereoImage:
    """Both views of a folder's pair (two view files, or one stereo photo: left == right),
    through the same reader as --left/--right and --input."""
    return read_stereo(pair.left) if pair.left == pair.right else read_views(pair.left, pair.right)


def find_pairs(root: Path) -> tuple[list[PairFiles], list[str]]:
    """The pairs of an input folder, and what is wrong with the rest.

    Three kinds: scene subfolders ``<scene>/lr0.png, lr1.png`` (what ``prepare testset``
    writes), flat ``<name>_L.png, <name>_R.png`` files (Flickr1024's, which ``prepare`` reads),
    and stereo photos ``<name>.mpo``, ``.jps``, ``.heic``; all at once are taken too.
    Incomplete scenes and unpaired files are returned as problems, not raised, so that the rest
    of the batch can run.
    """
    if not root.is_dir():
        raise IpassrError(f"{root}: no such folder")
    pairs, problems = scene_pairs(root, LEFT_STEM, RIGHT_STEM, root_is_scene=False)
    flat, unpaired = side_pairs(root)
    pairs, problems = pairs + flat, problems + unpaired
    pairs += [PairFiles(path.stem, path, path) for path in sorted(root.iterdir())
              if path.is_file() and not path.name.startswith(".")
              and path.suffix.lower() in PHOTO_SUFFIXES]
    names = [p.name for p in pairs]
    problems += [f"{name}: found both as a scene folder and as {name}_L/_R files"
                 for name in sorted({n for n in names if names.count(n) > 1})]
    pairs = [p for p in pairs if names.count(p.name) == 1]
    if not pairs and not problems:
        raise IpassrError(f"{root}: no pairs found (expected <scene>/{LEFT_STEM}.png, "
                          f"{RIGHT_STEM}.png subfolders, <name>_L.png, <name>_R.png files or "
                          ".mpo, .jps, .heic stereo photos)")
    return pairs, problems


def run_folder(args: argparse.Namespace) -> int:
    """Super-resolve every pair of --input-dir; skip pairs already done, carry on past bad ones,
    list every failure at the end (exit 2 when there was one). Under torchrun each process takes
    every WORLD_SIZE-th pair from its RANK, so no pair is done twice."""
    pairs, failures = find_pairs(args.input_dir)
    env = env_from_environment()
    share = pairs[env.rank::env.world_size]
    if not env.is_main:
        failures = []  # rank 0 reports the folder's problems
    check_outputs([p for pair in pairs for p in (pair.left, pair.right)],
                  [p for pair in pairs for p in output_paths(pair, args.output_dir)])
    todo = [pair for pair in share
            if args.overwrite or not all(p.is_file() for p in output_paths(pair, args.output_dir))]
    where = (f" (process {env.rank + 1} of {env.world_size}: {len(share)} of {len(pairs)} pairs)"
             if env.distributed else "")
    done_before = len(share) - len(todo)
    if done_before:
        print(f"{done_before} pair(s) already in {args.output_dir}: skipped (--overwrite redoes "
              f"them){where}")
    written = 0
    if todo:
        device = (f"cuda:{env.local_rank}" if args.device == "cuda" and env.distributed
                  else args.device)
        model = model_from_args(args, device=device, compile=args.compile)
        try:
            with tqdm(total=len(todo), desc=f"super-resolving{where}", unit="pair") as progress:
                for group in batches_of_equal_size(todo, args.batch_size):
                    failed = super_resolve_or_say_why(model, group, args.output_dir)
                    failures += failed
                    written += len(group) - len(failed)
                    progress.update(len(group))
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"{written + done_before} of {len(share)} pair(s) done{where}; run the same "
                "command again to continue (pairs whose two outputs exist are skipped)") from None
    print(f"wrote {2 * written} images to {args.output_dir}{where}")
    for failure in failures:
        print(f"ipassr: error: {failure}", file=sys.stderr)
    if failures:
        print(f"ipassr: error: {len(failures)} pair(s) failed, {written + done_before} done; run "
              "the same command again to retry only the missing ones", file=sys.stderr)
        return 2
    return 0


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding; unreadable files sort alone."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # read_image will report the problem properly
        return (-1, -1)


def batches_of_equal_size(pairs: list[PairFiles], batch_size: int) -> list[list[PairFiles]]:
    """Pairs grouped by left-view size, in runs of at most ``batch_size`` (order kept per size)."""
    if batch_size == 1:
        return [[pair] for pair in pairs]
    by_size: dict[tuple[int, int], list[PairFiles]] = {}
    for pair in pairs:
        by_size.setdefault(image_size(pair.left), []).append(pair)
    return [group[i:i + batch_size] for group in by_size.values()
            for i in range(0, len(group), batch_size)]


def super_resolve_or_say_why(model: StereoSR, group: list[PairFiles], output_dir: Path
                             ) -> list[str]:
    """``super_resolve_group``, and 'name: what went wrong' for each pair that failed: a batch
    that fails is redone one pair at a time, so that a bad file fails only its own pair."""
    try:
        super_resolve_group(model, group, output_dir)
        return []
    except (IpassrError, OSError) as error:
        if len(group) == 1:
            return [f"{group[0].name}: {error}"]
    return [failure for pair in group
            for failure in super_resolve_or_say_why(model, [pair], output_dir)]


def super_resolve_group(model: StereoSR, group: list[PairFiles], output_dir: Path) -> None:
    """Super-resolve pairs of equal size as one batch (``StereoSR.super_resolve_photos``) and
    write <name>_L.png / _R.png in their inputs' formats."""
    photos = [read_pair(pair) for pair in group]
    if len({photo.left.shape[:2] for photo in photos}) > 1:  # headers lied: one at a time
        for pair in group:
            super_resolve_group(model, [pair], output_dir)
        return
    for pair, sr in zip(group, model.super_resolve_photos(photos)):
        output_left, output_right = output_paths(pair, output_dir)
        write_stereo(plan_target(output_left=output_left, output_right=output_right), sr)
