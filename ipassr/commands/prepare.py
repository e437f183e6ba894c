"""``ipassr prepare``: make test sets (HR + MATLAB-exact LR) and training patch files from real datasets,
and synthetic stereo pairs from single images."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.datasets import LAYOUTS, StereoDataset, check_pairs, image_files, open_dataset, read_pair
from ..errors import IpassrError
from ..data.io import check_writable_folder, read_image, write_image

TESTSET_MOD = 4  # HR mod-crop shared by x2 and x4


def add_parser(subparsers) -> None:
    """Register ``prepare testset``, ``prepare patches`` and ``prepare synthetic``."""
    parser = subparsers.add_parser(
        "prepare", help="make test sets and training patches from stereo datasets",
        description="Turn real stereo datasets into a test set in the community layout "
                    "(hr/, lr_x2/, lr_x4/) or into one training patch file, and single images "
                    "into synthetic stereo pairs. Layouts: " + "; ".join(LAYOUTS.values()) + ".")
    parser.set_defaults(run=run)
    sub = parser.add_subparsers(dest="prepare_command", metavar="WHAT")
    sub.required = True

    testset = sub.add_parser(
        "testset", help="write ROOT/NAME/hr, lr_x2, lr_x4 from a dataset folder",
        description="Write ROOT/NAME/hr/<scene>/hr0.png, hr1.png (mod-cropped to a multiple of 4) and "
                    "lr_x2/, lr_x4/<scene>/lr0.png, lr1.png (MATLAB-exact bicubic). Ground-truth "
                    "disparity found next to the images is copied as hr/<scene>/disp0.pfm.")
    testset.add_argument("source", type=Path, metavar="SRC", help="dataset folder (any supported layout)")
    testset.add_argument("--name", required=True, help="dataset name (folder under --output-root)")
    testset.add_argument("--output-root", required=True, type=Path, help="root of the test sets")
    testset.add_argument("--layout", choices=sorted(LAYOUTS), help="force the layout instead of detecting it")
    testset.add_argument("--scales", type=int, nargs="+", default=[2, 4], metavar="S",
                         help="LR scales to write (default: 2 4; each must divide 4)")
    testset.add_argument("--overwrite", action="store_true", help="replace an existing ROOT/NAME")
    testset.set_defaults(run=run_testset)

    patches = sub.add_parser(
        "patches", help="extract the paper's training patches into one .safetensors file",
        description="Cut 30x90 LR patches (stride 20, 3-pixel margin) and the matching HR patches "
                    "from every pair of every SRC, MATLAB-exact LR, into one memory-mappable file. "
                    "Middlebury sources are first shrunk by 2, as in the paper.")
    patches.add_argument("sources", type=Path, nargs="+", metavar="SRC", help="dataset folders")
    patches.add_argument("--scale", type=int, required=True, help="upscaling factor (2 or 4)")
    patches.add_argument("--output", type=Path, required=True, help="output .safetensors file")
    patches.add_argument("--layout", choices=sorted(LAYOUTS), help="force the layout of every SRC")
    shrink = patches.add_mutually_exclusive_group()
    shrink.add_argument("--shrink-middlebury", dest="shrink", action="store_const", const=True,
                        help="shrink every SRC by 2 first, as Middlebury (default: only Middlebury layouts)")
    shrink.add_argument("--no-shrink", dest="shrink", action="store_const", const=False,
                        help="never shrink by 2 (e.g. for already reduced Middlebury images)")
    patches.add_argument("--shrink-wider-than", type=int, metavar="PX",
                         help="also shrink by 2 every pair wider than PX pixels (large pairs whose "
                              "disparities would not fit a 90-column LR patch)")
    patches.add_argument("--hints", action="store_true",
                         help="also store OpenCV SGBM disparities of every patch, for training with "
                              "--hint-weight (not in the paper; needs ipassr[stereo])")
    patches.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    patches.set_defaults(run=run_patches, shrink=None)

    synthetic = sub.add_parser(
        "synthetic", help="make stereo pairs from single images (a disparity per segment)",
        description="Make a stereo pair from every single image of every SRC: the image is the left "
                    "view; each of its segments gets one integer disparity (a random slant from far "
                    "at the top to near at the bottom, plus a random offset per segment) and the "
                    "right view is the left view warped by it (the nearer segment wins; no pixel is "
                    "resampled). Writes OUT/<name>_L.png, _R.png, a folder 'prepare patches' reads.")
    synthetic.add_argument("sources", type=Path, nargs="+", metavar="SRC",
                           help="single images, or folders of them")
    synthetic.add_argument("--output", type=Path, required=True, help="output folder")
    synthetic.add_argument("--max-disparity", type=int, default=96, metavar="PX",
                           help="largest disparity in pixels of the image (default: 96); both views "
                                "lose this many columns on the right")
    synthetic.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synthetic.add_argument("--overwrite", action="store_true", help="replace existing pairs in --output")
    synthetic.set_defaults(run=run_synthetic)


def run(args: argparse.Namespace) -> int:
    """Not reached: the sub-subcommands set their own ``run``."""
    raise IpassrError("choose 'ipassr prepare testset', 'patches' or 'synthetic'")


def run_testset(args: argparse.Namespace) -> int:
    """Write the test set; every pair is checked before anything is written."""
    scales = sorted(set(args.scales))
    bad = [s for s in scales if s < 1 or TESTSET_MOD % s]
    if bad:
        raise IpassrError(f"--scales {bad}: each scale must divide the HR mod-crop {TESTSET_MOD}")
    dataset = open_dataset(args.source, args.layout)
    check_pairs(dataset.pairs, args.source)
    target = args.output_root / args.name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        if not args.overwrite:
            raise IpassrError(f"{target} already exists and is not empty (use --overwrite to replace it)")
        if not (target / "hr").is_dir():
            raise IpassrError(f"{target} does not look like a test set (no hr/ folder): not replacing it")
    print(f"{args.source}: {dataset.description}, {len(dataset)} pair{'' if len(dataset) == 1 else 's'}")
    partial = args.output_root / f".{args.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    try:
        small = _write_testset(dataset, partial, scales, args.name)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    with_gt = sum(p.disparity is not None for p in dataset.pairs)
    print(f"wrote {target}: {len(dataset)} scenes, hr + " + ", ".join(f"lr_x{s}" for s in scales)
          + (f", ground-truth disparity for {with_gt}" if with_gt else ""))
    if small:
        print(f"note: {len(small)} scene(s) are too narrow for the 64-column 'Left' crop: {', '.join(small)}")
    return 0


def _write_testset(dataset: StereoDataset, target: Path, scales: list[int], name: str) -> list[str]:
    """Write hr/, lr_x{s}/ (and GT disp0.pfm) of every pair under ``target``; return too-narrow scenes."""
    from ..data.disparity import read_disparity, write_pfm  # torch: not for --help
    from ..data.resize import degrade, mod_crop

    small = []
    for pair in tqdm(dataset.pairs, desc=f"preparing {name}", unit="pair"):
        left, right = read_pair(pair)
        left, right = mod_crop(left, TESTSET_MOD), mod_crop(right, TESTSET_MOD)
        if left.size == 0:
            raise IpassrError(f"{pair.left}: image smaller than {TESTSET_MOD}x{TESTSET_MOD}")
        if left.shape[1] <= 64 + 10:
            small.append(pair.name)
        write_image(target / "hr" / pair.name / "hr0.png", left)
        write_image(target / "hr" / pair.name / "hr1.png", right)
        for scale in scales:
            folder = target / f"lr_x{scale}" / pair.name
            write_image(folder / "lr0.png", degrade(left, scale))
            write_image(folder / "lr1.png", degrade(right, scale))
        if pair.disparity is not None:
            disparity = read_disparity(pair.disparity)
            write_pfm(target / "hr" / pair.name / "disp0.pfm", disparity[: left.shape[0], : left.shape[1]])
    return small


def _source_name(path: Path, taken: set[str]) -> str:
    """A unique, readable source name: the folder path as given, posix style."""
    name = path.as_posix().rstrip("/") or "."
    base, k = name, 2
    while name in taken:
        name, k = f"{base}#{k}", k + 1
    taken.add(name)
    return name


def run_patches(args: argparse.Namespace) -> int:
    """Plan patch counts from headers, then stream every pair's patches into the output file."""
    from ..data.disparity import require_opencv  # torch: not for --help
    from ..data.patches import plan_patches, write_patch_file

    if args.scale < 1:
        raise IpassrError(f"--scale must be a positive integer, got {args.scale}")
    if args.output.exists() and not args.overwrite:
        raise IpassrError(f"{args.output} already exists (use --overwrite to replace it)")
    if args.output.suffix != ".safetensors":
        raise IpassrError(f"{args.output}: the patch file must end in .safetensors")
    datasets: list[tuple[str, StereoDataset, bool]] = []
    taken: set[str] = set()
    for source in args.sources:
        dataset = open_dataset(source, args.layout)
        check_pairs(dataset.pairs, source)
        shrink = dataset.is_middlebury if args.shrink is None else args.shrink
        datasets.append((_source_name(source, taken), dataset, shrink))
        print(f"{source}: {dataset.description}, {len(dataset)} pair{'' if len(dataset) == 1 else 's'}"
              + (", shrunk by 2 first" if shrink else ""))
    if args.shrink_wider_than is not None and args.shrink_wider_than < 1:
        raise IpassrError(f"--shrink-wider-than {args.shrink_wider_than}: must be a positive width")
    if args.hints:
        require_opencv("--hints")  # fail before any pair is cut
    jobs = plan_patches(datasets, args.scale, args.shrink_wider_than)
    shrunk = sum(j.middlebury for j in jobs)
    if args.shrink_wider_than is not None:
        print(f"{shrunk} of {len(jobs)} pairs shrunk by 2 first")
    bar = tqdm(total=len(jobs), desc="cutting patches", unit="pair")
    counts = write_patch_file(args.output, jobs, args.scale, read_pair, progress=lambda job: bar.update(),
                              hints=args.hints)
    bar.close()
    width = max(len(name) for name in counts)
    for name, count in counts.items():
        print(f"  {name:<{width}}  {count:>8} patches")
    print(f"wrote {args.output}: {sum(counts.values())} patch pairs at x{args.scale}"
          + (" with SGBM disparity hints" if args.hints else "") + ", "
          f"{args.output.stat().st_size / 2**20:.1f} MiB")
    zero = [j for j in jobs if j.count == 0]
    if zero:
        print(f"note: {len(zero)} pair(s) too small for any patch: {', '.join(j.pair.name for j in zero[:10])}"
              + (" (Middlebury sources are shrunk by 2 first; --no-shrink keeps already reduced images, "
                 "e.g. MiddEval3 trainingQ, at their size)" if any(j.middlebury for j in zero) else ""))
    return 0


def _single_images(sources: list[Path]) -> list[Path]:
    """The image files named, and those directly inside the folders named (IpassrError if none)."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files += image_files(source)
        elif source.is_file():
            files.append(source)
        else:
            raise IpassrError(f"{source}: no such file or folder")
    if not files:
        raise IpassrError(f"{', '.join(map(str, sources))}: no image files found")
    stems = [f.stem for f in files]
    doubles = sorted({s for s in stems if stems.count(s) > 1})
    if doubles:
        raise IpassrError(f"two images would make the same pair name: {', '.join(doubles[:3])}")
    return files


def run_synthetic(args: argparse.Namespace) -> int:
    """Write one synthetic pair per single image; each pair's seed derives from --seed and its index."""
    from ..data.synthetic import synthetic_pair, too_narrow  # torch: not for --help

    files = _single_images(args.sources)
    if args.max_disparity < 1:
        raise IpassrError(f"--max-disparity {args.max_disparity}: must be at least 1 pixel")
    if not args.overwrite:
        existing = [f for f in files if (args.output / f"{f.stem}_L.png").exists()]
        if existing:
            raise IpassrError(f"{args.output / (existing[0].stem + '_L.png')} already exists "
                              "(use --overwrite to replace it)")
    check_writable_folder(args.output)
    skipped = []
    for index, file in enumerate(tqdm(files, desc="synthetic pairs", unit="pair")):
        image = read_image(file)
        if too_narrow(image.shape[1], args.max_disparity):
            skipped.append(file.name)
            continue
        rng = np.random.default_rng([args.seed, index])
        left, right, _ = synthetic_pair(image, rng, args.max_disparity)
        write_image(args.output / f"{file.stem}_L.png", left)
        write_image(args.output / f"{file.stem}_R.png", right)
    print(f"wrote {args.output}: {len(files) - len(skipped)} synthetic pairs, "
          f"disparities 0-{args.max_disparity} px")
    if skipped:
        print(f"note: {len(skipped)} image(s) not wider than twice --max-disparity, skipped: "
              + ", ".join(skipped[:10]))
    return 0
