"""``ipassr infer``: super-resolve one stereo pair, or every scene of a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from ..errors import IpassrError
from ..inference import load_model

LEFT_NAME, RIGHT_NAME = "lr0.png", "lr1.png"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "infer", help="super-resolve a stereo pair or a folder of pairs",
        description="Super-resolve a stereo pair (--left/--right) or every scene subfolder of "
                    f"--input-dir (each holding {LEFT_NAME} = left and {RIGHT_NAME} = right).")
    parser.add_argument("--weights", type=Path, help="weights file (.pth.tar or .safetensors); "
                        "default: the shipped weights for --scale")
    parser.add_argument("--scale", type=int, help="upscaling factor (checked against --weights)")
    parser.add_argument("--left", type=Path, help="left view")
    parser.add_argument("--right", type=Path, help="right view")
    parser.add_argument("--output-left", type=Path, help="where to write the SR left view")
    parser.add_argument("--output-right", type=Path, help="where to write the SR right view")
    parser.add_argument("--input-dir", type=Path, help="folder of scene subfolders")
    parser.add_argument("--output-dir", type=Path, help="writes <scene>_L.png and <scene>_R.png")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    pair_args = (args.left, args.right, args.output_left, args.output_right)
    if args.input_dir is not None:
        if any(a is not None for a in pair_args):
            raise IpassrError("use either --input-dir/--output-dir or --left/--right, not both")
        if args.output_dir is None:
            raise IpassrError("--input-dir needs --output-dir")
        scenes = find_scenes(args.input_dir)
        model = load_model(args.weights, scale=args.scale, device=args.device)
        for scene, folder in tqdm(scenes, desc="super-resolving", unit="pair"):
            model.super_resolve_files(folder / LEFT_NAME, folder / RIGHT_NAME,
                                      args.output_dir / f"{scene}_L.png",
                                      args.output_dir / f"{scene}_R.png")
        print(f"wrote {2 * len(scenes)} images to {args.output_dir}")
        return 0
    missing = [flag for flag, value in zip(
        ("--left", "--right", "--output-left", "--output-right"), pair_args) if value is None]
    if missing:
        raise IpassrError(f"missing {', '.join(missing)} (or use --input-dir/--output-dir)")
    model = load_model(args.weights, scale=args.scale, device=args.device)
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
