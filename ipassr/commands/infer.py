"""``ipassr infer``: super-resolve one stereo pair, or every scene of a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from . import add_weights_arguments
from ..errors import IpassrError
from ..inference import PRECISIONS, StereoSR, load_model
from ..io import image_to_tensor, read_stereo_pair, tensor_to_image, write_image
from .visualize import memory_size

LEFT_NAME, RIGHT_NAME = "lr0.png", "lr1.png"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "infer", help="super-resolve a stereo pair or a folder of pairs",
        description="Super-resolve a stereo pair (--left/--right) or every scene subfolder of "
                    f"--input-dir (each holding {LEFT_NAME} = left and {RIGHT_NAME} = right).")
    add_weights_arguments(parser)
    parser.add_argument("--left", type=Path, help="left view")
    parser.add_argument("--right", type=Path, help="right view")
    parser.add_argument("--output-left", type=Path, help="where to write the SR left view")
    parser.add_argument("--output-right", type=Path, help="where to write the SR right view")
    parser.add_argument("--input-dir", type=Path, help="folder of scene subfolders")
    parser.add_argument("--output-dir", type=Path, help="writes <scene>_L.png and <scene>_R.png")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--max-memory", type=memory_size,
                        help="activation memory budget per forward pass, e.g. 2G or 512M "
                             "(default 4G on the CPU, half the available memory on a GPU); larger "
                             "images run in chunks, same results")
    parser.add_argument("--dtype", choices=tuple(PRECISIONS), default="float32",
                        help="network precision: bfloat16 or float16 for speed on a GPU (the "
                             "attention softmax and valid masks stay float32; default float32)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the network for pairs whose full attention maps fit "
                             "--max-memory (compiles once per image size; slower than the "
                             "default path on a CPU, meant for trying on a GPU)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="with --input-dir: super-resolve up to this many pairs of equal "
                             "size together (default 1)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    pair_args = (args.left, args.right, args.output_left, args.output_right)
    if args.input_dir is not None:
        if any(a is not None for a in pair_args):
            raise IpassrError("use either --input-dir/--output-dir or --left/--right, not both")
        if args.output_dir is None:
            raise IpassrError("--input-dir needs --output-dir")
        if args.batch_size < 1:
            raise IpassrError(f"--batch-size must be at least 1, got {args.batch_size}")
        scenes = find_scenes(args.input_dir)
        model = load_model(args.weights, scale=args.scale, device=args.device,
                           max_memory=args.max_memory, dtype=args.dtype, compile=args.compile)
        with tqdm(total=len(scenes), desc="super-resolving", unit="pair") as progress:
            for group in batches_of_equal_size(scenes, args.batch_size):
                super_resolve_group(model, group, args.output_dir)
                progress.update(len(group))
        print(f"wrote {2 * len(scenes)} images to {args.output_dir}")
        return 0
    missing = [flag for flag, value in zip(
        ("--left", "--right", "--output-left", "--output-right"), pair_args) if value is None]
    if missing:
        raise IpassrError(f"missing {', '.join(missing)} (or use --input-dir/--output-dir)")
    model = load_model(args.weights, scale=args.scale, device=args.device,
                       max_memory=args.max_memory, dtype=args.dtype, compile=args.compile)
    model.super_resolve_files(args.left, args.right, args.output_left, args.output_right)
    print(f"wrote {args.output_left} and {args.output_right} (x{model.scale})")
    return 0


def find_scenes(root: Path) -> list[tuple[str, Path]]:
    """Scene subfolders of ``root`` holding both views; every incomplete scene is an error."""
    if not root.is_dir():
        raise IpassrError(f"{root}: no such folder")
    scenes, incomplete = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        present = [(folder / n).is_file() for n in (LEFT_NAME, RIGHT_NAME)]
        if all(present):
            scenes.append((folder.name, folder))
        elif any(present):
            missing = LEFT_NAME if not present[0] else RIGHT_NAME
            incomplete.append(f"{folder.name} (no {missing})")
    if incomplete:
        raise IpassrError(f"{root}: incomplete scenes: {', '.join(incomplete)}")
    if not scenes:
        raise IpassrError(f"{root}: no scene subfolders with {LEFT_NAME} and {RIGHT_NAME}")
    return scenes


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding; unreadable files sort alone."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # read_image will report the problem properly
        return (-1, -1)


def batches_of_equal_size(scenes: list[tuple[str, Path]], batch_size: int
                          ) -> list[list[tuple[str, Path]]]:
    """Scenes grouped by left-view size, in runs of at most ``batch_size`` (order kept per size)."""
    if batch_size == 1:
        return [[scene] for scene in scenes]
    by_size: dict[tuple[int, int], list[tuple[str, Path]]] = {}
    for scene in scenes:
        by_size.setdefault(image_size(scene[1] / LEFT_NAME), []).append(scene)
    return [group[i:i + batch_size] for group in by_size.values()
            for i in range(0, len(group), batch_size)]


def super_resolve_group(model: StereoSR, group: list[tuple[str, Path]], output_dir: Path) -> None:
    """Super-resolve scenes of equal size as one batch and write <scene>_L.png / _R.png."""
    if len(group) == 1:
        scene, folder = group[0]
        model.super_resolve_files(folder / LEFT_NAME, folder / RIGHT_NAME,
                                  output_dir / f"{scene}_L.png", output_dir / f"{scene}_R.png")
        return
    pairs = [read_stereo_pair(folder / LEFT_NAME, folder / RIGHT_NAME) for _, folder in group]
    sizes = {pair[0].shape for pair in pairs}
    if len(sizes) > 1:  # headers lied or unreadable: fall back to one pair at a time
        for item in group:
            super_resolve_group(model, [item], output_dir)
        return
    import torch

    left = torch.cat([image_to_tensor(pair[0]) for pair in pairs])
    right = torch.cat([image_to_tensor(pair[1]) for pair in pairs])
    try:
        sr_left, sr_right = model.super_resolve_tensors(left, right)
    except IpassrError as error:
        raise IpassrError(f"scenes {', '.join(scene for scene, _ in group)}: {error}") from None
    for i, (scene, _) in enumerate(group):
        write_image(output_dir / f"{scene}_L.png", tensor_to_image(sr_left[i:i + 1].clamp(0, 1)))
        write_image(output_dir / f"{scene}_R.png", tensor_to_image(sr_right[i:i + 1].clamp(0, 1)))
