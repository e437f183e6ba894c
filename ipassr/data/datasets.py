"""Readers for real stereo dataset layouts, with automatic layout detection.

Every reader finds a list of ``PairFiles`` (scene name, left file, right file, optional ground-truth
disparity of the left view); ``StereoDataset`` iterates them as ``(name, left, right)`` RGB uint8
arrays (H, W, 3). Supported layouts (``LAYOUTS``):

=================  ===================================================================
``flickr1024``     ``NNNN_L.png`` / ``NNNN_R.png`` in one folder
``plain``          any ``<name>_L.<ext>`` / ``<name>_R.<ext>`` files in one folder
``middlebury2014`` MiddEval3 / Middlebury 2014: ``<Scene>/im0.png, im1.png`` (GT ``disp0GT.pfm``/``disp0.pfm``)
``eth3d``          ETH3D two-view: ``<scene>/im0.png, im1.png`` (GT ``disp0GT.pfm``)
``im0-im1``        ``<scene>/im0, im1`` folders that are neither recognisably Middlebury nor ETH3D
``middlebury2003`` ``<Scene>/im2.png, im6.png``
``middlebury2005`` Middlebury 2005/2006: ``<Scene>/view1.png, view5.png``
``kitti2012``      ``colored_0/``, ``colored_1/`` (GT ``disp_occ/``)
``kitti2015``      ``image_2/``, ``image_3/`` (GT ``disp_occ_0/``)
``testset``        community test layout ``hr/<scene>/hr0.png, hr1.png`` (+ ``lr_x{s}/<scene>/lr0, lr1``)
=================  ===================================================================

A scene folder itself (e.g. ``middlebury/2003/Cones``) is read as a one-pair dataset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ..errors import ImageReadError, IpassrError
from .io import GREY_MODES, PathLike, read_image, too_large

__all__ = ["LAYOUTS", "PairFiles", "StereoDataset", "TestScene", "open_dataset", "detect_layout",
           "read_testset", "check_pairs", "read_pair", "probe_image", "image_files", "side_pairs",
           "scene_pairs", "MIDDLEBURY_LAYOUTS"]

IMAGE_SUFFIXES = (".png", ".ppm", ".pgm", ".pnm", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")

LAYOUTS = {
    "flickr1024": "Flickr1024 (NNNN_L / NNNN_R)",
    "plain": "folder of *_L / *_R files",
    "middlebury2014": "Middlebury 2014 / MiddEval3 (<Scene>/im0, im1)",
    "eth3d": "ETH3D two-view (<scene>/im0, im1)",
    "im0-im1": "<scene>/im0, im1 folders",
    "middlebury2003": "Middlebury 2003 (<Scene>/im2, im6)",
    "middlebury2005": "Middlebury 2005/2006 (<Scene>/view1, view5)",
    "kitti2012": "KITTI 2012 (colored_0/, colored_1/)",
    "kitti2015": "KITTI 2015 (image_2/, image_3/)",
    "testset": "test-set layout (hr/<scene>/hr0, hr1)",
}
MIDDLEBURY_LAYOUTS = frozenset({"middlebury2014", "middlebury2003", "middlebury2005"})

# Scene-folder layouts: layout -> (left stem, right stem, ground-truth disparity file names).
_SCENE_LAYOUTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "im0-im1": ("im0", "im1", ("disp0GT.pfm", "disp0.pfm")),
    "middlebury2003": ("im2", "im6", ()),
    "middlebury2005": ("view1", "view5", ()),
}
# Folder-pair layouts: layout -> (left folder, right folder, ground-truth disparity folders).
_FOLDER_LAYOUTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "kitti2012": ("colored_0", "colored_1", ("disp_occ",)),
    "kitti2015": ("image_2", "image_3", ("disp_occ_0",)),
}
_MIDDEVAL3_SCENES = frozenset(s.lower() for s in (
    "Adirondack ArtL Jadeplant Motorcycle MotorcycleE Piano PianoL Pipes Playroom Playtable "
    "PlaytableP Recycle Shelves Teddy Vintage Australia AustraliaP Bicycle2 Classroom2 Classroom2E "
    "Computer Crusade CrusadeP Djembe DjembeL Hoops Livingroom Newkuba Plants Staircase Backpack "
    "Cable Couch Flowers Mask Sticks Storage Sword1 Sword2 Umbrella").split())
_ETH3D_SCENE = re.compile(r"^[a-z]+(_[a-z]+)*_\d+[ls]$")
_SIDE = re.compile(r"^(?P<stem>.+)_(?P<side>[LR])$")


@dataclass(frozen=True)
class PairFiles:
    """Files of one stereo pair: scene name, left and right image, optional GT disparity (left view)."""

    name: str
    left: Path
    right: Path
    disparity: Path | None = None


@dataclass
class StereoDataset:
    """A stereo dataset on disk: its root, detected layout and pairs; iterates (name, left, right)."""

    root: Path
    layout: str
    pairs: list[PairFiles] = field(default_factory=list)

    @property
    def is_middlebury(self) -> bool:
        """True for Middlebury layouts (whose training images the paper shrinks by 2 first)."""
        return self.layout in MIDDLEBURY_LAYOUTS

    @property
    def description(self) -> str:
        """Human-readable layout name."""
        return LAYOUTS[self.layout]

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield (name, left, right) as RGB uint8 (H, W, 3) arrays of equal size."""
        for pair in self.pairs:
            left, right = read_pair(pair)
            yield pair.name, left, right


@dataclass(frozen=True)
class TestScene:
    """One scene of the community test layout: HR pair and the LR pair at one scale."""

    name: str
    hr_left: Path
    hr_right: Path
    lr_left: Path
    lr_right: Path
    disparity: Path | None = None


def stereo_motorcycle(alternative: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image's Middlebury Motorcycle pair: left, right (uint8 (H, W, 3)) and GT disparity.

    ``alternative`` completes the error raised when scikit-image is missing (what else to pass).
    """
    try:
        from skimage.data import stereo_motorcycle as load
    except ImportError as exc:
        hint = f", or {alternative}" if alternative else ""
        raise IpassrError("the Middlebury Motorcycle pair comes from scikit-image: "
                          f"pip install 'ipassr[demo]'{hint}") from exc
    return load()


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; hidden ones (``._x.png`` copies of
    macOS metadata, temporary files) left out."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def _find_image(folder: Path, stem: str) -> Path | None:
    """The image ``folder/stem.<ext>`` for any supported extension, or None."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _first_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` that exists as a file in ``folder``, or None."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def subdirectories(root: Path) -> list[Path]:
    """Non-hidden subfolders of ``root``, sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scene_layout_of(folder: Path) -> str | None:
    """Which scene-folder layout ``folder`` is a scene of (has both views), or None."""
    for layout, (left, right, _) in _SCENE_LAYOUTS.items():
        if _find_image(folder, left) and _find_image(folder, right):
            return layout
    return None


def _has_side_files(folder: Path) -> bool:
    """True when ``folder`` holds images named ``*_L`` or ``*_R``."""
    return any(_SIDE.match(p.stem) for p in image_files(folder))


def detect_layout(root: PathLike, *, hint: bool = True) -> str:
    """Detect the layout of a dataset folder; raise IpassrError when none (or several) match."""
    root = Path(root)
    if not root.exists():
        raise IpassrError(f"{root}: no such folder")
    if not root.is_dir():
        raise IpassrError(f"{root}: not a folder (give the dataset folder, not a file)")
    if (root / "hr").is_dir() and any(_find_image(d, "hr0") for d in subdirectories(root / "hr")):
        return "testset"
    for layout, (left, right, _) in _FOLDER_LAYOUTS.items():
        if (root / left).is_dir() and (root / right).is_dir():
            return layout
    if _scene_layout_of(root):
        return _refine_im0(_scene_layout_of(root), root, [root])
    found = {}
    for sub in subdirectories(root):
        layout = _scene_layout_of(sub)
        if layout:
            found.setdefault(layout, []).append(sub)
    if len(found) > 1:
        kinds = ", ".join(f"{len(v)} {LAYOUTS[k]}" for k, v in sorted(found.items()))
        raise IpassrError(f"{root}: ambiguous layout, scene folders of several kinds ({kinds})")
    if found:
        layout, scenes = next(iter(found.items()))
        return _refine_im0(layout, root, scenes)
    if _has_side_files(root):
        stems = {_SIDE.match(p.stem).group("stem") for p in image_files(root) if _SIDE.match(p.stem)}
        return "flickr1024" if all(s.isdigit() for s in stems) else "plain"
    raise IpassrError(f"{root}: no stereo dataset found: expected one of the layouts "
                      f"{', '.join(LAYOUTS.values())}{_nested_hint(root) if hint else ''}")


def _nested_hint(root: Path, depth: int = 2) -> str:
    """' (datasets found in: a, b/c)' for subfolders up to ``depth`` levels down, or ''."""
    found: list[str] = []
    level = subdirectories(root)
    for _ in range(depth):
        following = []
        for sub in level:
            try:
                detect_layout(sub, hint=False)
                found.append(str(sub.relative_to(root)))
            except IpassrError:
                following.extend(subdirectories(sub))
        level = following[:200]
    return f" (datasets found in subfolders: {', '.join(found[:8])})" if found else ""


def _refine_im0(layout: str, root: Path, scenes: list[Path]) -> str:
    """Tell MiddEval3 from ETH3D im0/im1 folders by path and scene names; keep 'im0-im1' if unsure."""
    if layout != "im0-im1":
        return layout
    path = str(root.resolve()).lower()
    if "middlebury" in path or "middeval" in path:
        return "middlebury2014"
    if "eth3d" in path:
        return "eth3d"
    names = [s.name for s in scenes]
    if all(n.lower().split("-")[0] in _MIDDEVAL3_SCENES for n in names):
        return "middlebury2014"
    if all(_ETH3D_SCENE.match(n) for n in names):
        return "eth3d"
    return "im0-im1"


def open_dataset(root: PathLike, layout: str | None = None) -> StereoDataset:
    """Find every pair of a dataset folder (layout detected unless given); errors list unpaired files."""
    root = Path(root)
    if layout is None:
        layout = detect_layout(root)
    elif layout not in LAYOUTS:
        raise IpassrError(f"unknown layout '{layout}' (known: {', '.join(LAYOUTS)})")
    elif not root.is_dir():
        raise IpassrError(f"{root}: no such folder")
    if layout in ("flickr1024", "plain"):
        pairs = _side_pairs(root)
    elif layout in _FOLDER_LAYOUTS:
        pairs = _folder_pairs(root, *_FOLDER_LAYOUTS[layout])
    elif layout == "testset":
        pairs = [PairFiles(s.name, s.hr_left, s.hr_right, s.disparity) for s in _testset_hr(root)]
    else:
        base = "im0-im1" if layout in ("middlebury2014", "eth3d") else layout
        pairs = _scene_pairs(root, *_SCENE_LAYOUTS[base])
    if not pairs:
        raise IpassrError(f"{root}: no stereo pairs found for layout {LAYOUTS[layout]}")
    return StereoDataset(root, layout, pairs)


def _unpaired_error(root: Path, problems: list[str]) -> IpassrError:
    """One error naming every unpaired file of a dataset."""
    shown = "; ".join(problems[:20]) + (f"; ... ({len(problems) - 20} more)" if len(problems) > 20 else "")
    return IpassrError(f"{root}: {len(problems)} unpaired file(s): {shown}")


def _side_pairs(root: Path) -> list[PairFiles]:
    """Pairs of ``<name>_L`` / ``<name>_R`` files in one folder; unpaired files are an error."""
    pairs, problems = side_pairs(root)
    if problems:
        raise _unpaired_error(root, problems)
    return pairs


def side_pairs(root: Path) -> tuple[list[PairFiles], list[str]]:
    """Pairs of ``<name>_L`` / ``<name>_R`` image files in one folder (sorted by name), and a
    problem for every file without its other view (returned, so that a caller may go on)."""
    sides: dict[str, dict[str, Path]] = {}
    for path in image_files(root):
        match = _SIDE.match(path.stem)
        if match:
            sides.setdefault(match.group("stem"), {})[match.group("side")] = path
    problems = [f"{path.name} has no {'right' if side == 'L' else 'left'} view "
                f"({stem}_{'R' if side == 'L' else 'L'}{path.suffix})"
                for stem, views in sorted(sides.items()) if len(views) == 1
                for side, path in views.items()]
    return [PairFiles(stem, views["L"], views["R"]) for stem, views in sorted(sides.items())
            if len(views) == 2], problems


def _folder_pairs(root: Path, left_dir: str, right_dir: str, gt_dirs: tuple[str, ...]) -> list[PairFiles]:
    """Pairs of same-named files in a left and a right folder (KITTI), with GT disparity if present."""
    lefts = {p.stem: p for p in image_files(root / left_dir)}
    rights = {p.stem: p for p in image_files(root / right_dir)}
    problems = [f"{left_dir}/{lefts[s].name} has no match in {right_dir}/" for s in sorted(set(lefts) - set(rights))]
    problems += [f"{right_dir}/{rights[s].name} has no match in {left_dir}/" for s in sorted(set(rights) - set(lefts))]
    if problems:
        raise _unpaired_error(root, problems)
    pairs = []
    for stem in sorted(lefts):
        gt = next((g / f"{stem}.png" for g in (root / d for d in gt_dirs) if (g / f"{stem}.png").is_file()), None)
        pairs.append(PairFiles(stem, lefts[stem], rights[stem], gt))
    return pairs


def _scene_pairs(root: Path, left: str, right: str, gt_names: tuple[str, ...]) -> list[PairFiles]:
    """One pair per scene folder (or ``root`` itself when it is a scene folder); incomplete
    scenes are an error."""
    pairs, problems = scene_pairs(root, left, right, gt_names)
    if problems:
        raise _unpaired_error(root, problems)
    return pairs


def scene_pairs(root: Path, left: str, right: str, gt_names: tuple[str, ...] = (), *,
                root_is_scene: bool = True) -> tuple[list[PairFiles], list[str]]:
    """One pair per scene subfolder holding images ``left.<ext>`` and ``right.<ext>`` (or
    ``root`` itself when it holds them and ``root_is_scene``), and a problem for every scene with
    one view only (returned, so that a caller may go on)."""
    if root_is_scene and (_find_image(root, left) or _find_image(root, right)):
        scenes = [root]
    else:
        scenes = [d for d in subdirectories(root) if _find_image(d, left) or _find_image(d, right)]
    pairs, problems = [], []
    for scene in scenes:
        left_file, right_file = _find_image(scene, left), _find_image(scene, right)
        if left_file is None or right_file is None:
            problems.append(f"{scene.name}/ has {(left_file or right_file).name} but no "
                            f"{left if left_file is None else right} image")
            continue
        pairs.append(PairFiles(scene.name, left_file, right_file, _first_file(scene, gt_names)))
    return pairs, problems


def _testset_hr(root: Path) -> list[TestScene]:
    """HR pairs of a community test layout (LR paths left empty)."""
    return _testset_scenes(root, None)


def _testset_scenes(root: Path, scale: int | None) -> list[TestScene]:
    """Scenes of ``root/hr`` (and ``root/lr_x{scale}`` when scale is given); errors list what is missing."""
    hr_root = root / "hr"
    if not hr_root.is_dir():
        raise IpassrError(f"{root}: no hr/ folder (expected the layout hr/<scene>/hr0.png, hr1.png)")
    lr_root = root / f"lr_x{scale}" if scale else None
    if lr_root is not None and not lr_root.is_dir():
        have = sorted(p.name for p in root.glob("lr_x*") if p.is_dir())
        raise IpassrError(f"{root}: no lr_x{scale}/ folder for scale {scale}"
                          + (f" (found {', '.join(have)})" if have else ""))
    scenes, problems = [], []
    for scene in subdirectories(hr_root):
        hr0, hr1 = _find_image(scene, "hr0"), _find_image(scene, "hr1")
        if hr0 is None or hr1 is None:
            problems.append(f"hr/{scene.name}/ lacks {'hr0' if hr0 is None else 'hr1'}")
            continue
        lr0 = lr1 = Path()
        if lr_root is not None:
            lr0, lr1 = _find_image(lr_root / scene.name, "lr0"), _find_image(lr_root / scene.name, "lr1")
            if lr0 is None or lr1 is None:
                problems.append(f"lr_x{scale}/{scene.name}/ lacks "
                                + ("lr0 and lr1" if lr0 is None and lr1 is None else "lr0" if lr0 is None else "lr1"))
                continue
        scenes.append(TestScene(scene.name, hr0, hr1, lr0, lr1, _first_file(scene, ("disp0.pfm", "disp0GT.pfm", "disp0.png"))))
    if lr_root is not None:
        extra = sorted({d.name for d in subdirectories(lr_root)} - {d.name for d in subdirectories(hr_root)})
        problems += [f"lr_x{scale}/{name}/ has no HR scene" for name in extra]
    if problems:
        raise IpassrError(f"{root}: incomplete test set: {'; '.join(problems)}")
    if not scenes:
        raise IpassrError(f"{root}: hr/ holds no scenes")
    return scenes


def read_testset(root: PathLike, scale: int) -> list[TestScene]:
    """Scenes of a community-layout test set at one scale; IpassrError lists every incomplete scene."""
    return _testset_scenes(Path(root), int(scale))


def probe_image(path: Path) -> tuple[tuple[int, int], str]:
    """Size (W, H) and colour kind ('grey'/'colour') from the header only; ImageReadError if unreadable."""
    try:
        with Image.open(path) as image:
            return image.size, ("grey" if image.mode in GREY_MODES else "colour")
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: no such file") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: {too_large(exc)}") from exc
    except Exception as exc:  # PIL raises many kinds for broken files
        raise ImageReadError(f"{path}: not a readable image ({exc.__class__.__name__})") from exc


def check_pairs(pairs: list[PairFiles], root: PathLike = "") -> None:
    """Check every pair from its headers: readable, same size, not grey/RGB mixed; one error lists all."""
    problems = []
    for pair in pairs:
        try:
            (lsize, lkind), (rsize, rkind) = probe_image(pair.left), probe_image(pair.right)
        except ImageReadError as exc:
            problems.append(str(exc))
            continue
        if lsize != rsize:
            problems.append(f"{pair.name}: left {pair.left.name} is {lsize[0]}x{lsize[1]} but right "
                            f"{pair.right.name} is {rsize[0]}x{rsize[1]}")
        elif lkind != rkind:
            problems.append(f"{pair.name}: left {pair.left.name} is {'grayscale' if lkind == 'grey' else 'RGB'} but "
                            f"right {pair.right.name} is {'grayscale' if rkind == 'grey' else 'RGB'} "
                            f"(mixed grayscale/RGB pair)")
    if problems:
        where = f"{root}: " if str(root) else ""
        shown = "; ".join(problems[:20]) + (f"; ... ({len(problems) - 20} more)" if len(problems) > 20 else "")
        raise IpassrError(f"{where}{len(problems)} bad pair(s): {shown}")


def read_pair(pair: PairFiles) -> tuple[np.ndarray, np.ndarray]:
    """Read both views as RGB uint8 (H, W, 3); errors name the scene (size or grey/RGB mismatch)."""
    check_pairs([pair])
    return read_image(pair.left), read_image(pair.right)
