"""Stereo media in and out: one reader and one writer for every way people keep a stereo photo.

In: two files (one view each), one picture holding both views in a layout (``layouts``), an MPO,
a JPS or a spatial HEIC (``containers``). Out: two files, one picture in any layout, a red-cyan
anaglyph, an MPO or a JPS. The layout comes from the container where it has one; a plain
picture needs it named. Half-size layouts keep their stored pixels; ``layouts.convert_views``
restores each eye's display aspect when the output has full-size eyes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import containers, layouts
from ..errors import ImageReadError, IpassrError
from .io import PathLike, atomic_path, check_same_size, image_pixels, too_large, write_image
from .layouts import ANAGLYPH, Layout

MPO_SUFFIXES, JPS_SUFFIXES, HEIC_SUFFIXES = {".mpo"}, {".jps"}, {".heic", ".heif"}
PHOTO_SUFFIXES = MPO_SUFFIXES | JPS_SUFFIXES | HEIC_SUFFIXES  # files that hold a whole stereo photo
DEFAULT_IMAGE_LAYOUT = "sbsl"  # one picture made from views that came without a layout


@dataclass(frozen=True)
class StereoImage:
    """The two views of a stereo photo (arrays as the io reader gives them), left first.

    ``layout``: the layout they were stored in (None for separate files and frames), so that a
    half-size layout is known to hold squeezed eyes; ``kind``: files, image, mpo, jps or heic.
    """

    left: np.ndarray
    right: np.ndarray
    layout: Layout | None
    kind: str
    name: str

    def with_views(self, left: np.ndarray, right: np.ndarray) -> "StereoImage":
        """The same photo with other views (e.g. super-resolved)."""
        return replace(self, left=left, right=right)


def pixels(image: Image.Image, name: str) -> np.ndarray:
    """One picture (opened, decoded here; ``name`` its file) -> its pixels as stored, the io
    reader's single conversion (``io.image_pixels``: grey, 16 bits and alpha kept)."""
    return image_pixels(image, name)


def read_stereo(path: PathLike, layout: str | Layout | None = None) -> StereoImage:
    """Both views of one file: an MPO, a JPS, a spatial HEIC, or a picture in ``layout``.

    The layout is read from the container where it has one (MPO and HEIC frames; JPS block,
    which ``layout`` may overrule); a plain picture without ``layout`` is refused with the choices.
    """
    path = _existing_file(path)
    name = str(path)
    chosen = layouts.get_layout(layout) if layout is not None else None
    if containers.is_heif(path):
        if chosen is None:
            left, right = containers.read_heic(path, name)
            return _photo(left, right, None, "heic", name)
        whole = containers.read_heic(path, name, whole_image=True)[0]
        return _split(pixels(whole, name), chosen, "heic", name)
    with _opened(path) as image:
        named_mpo = image.format == "JPEG" and path.suffix.lower() in MPO_SUFFIXES
        if image.format == "MPO" or named_mpo:
            if _is_stereo_mpo(image) and chosen is not None:
                raise IpassrError(f"{name}: an MPO stereo photo holds its views as frames; drop "
                                  f"--layout {chosen.name} (it is for one picture holding both views)")
            if chosen is None:  # refused unless two frames are marked as views
                left, right = containers.read_mpo(image, name)
                return _photo(left, right, None, "mpo", name)
        is_jps = image.format == "JPEG" and (path.suffix.lower() in JPS_SUFFIXES
                                             or _has_jps_block(image))
        if chosen is None and is_jps:
            chosen = layouts.get_layout(containers.jps_layout(image, name))
        if chosen is None:
            raise IpassrError(f"{name}: one picture; say how its two views sit with --layout "
                              f"(one of: {layouts.layout_names()})")
        return _split(pixels(image, name), chosen, "jps" if is_jps else "image", name)


def read_views(left: PathLike, right: PathLike) -> StereoImage:
    """A pair given as two files, one view each; the same file twice, or a file that holds both
    views (MPO, spatial HEIC, any multi-frame file), is refused with how to pass it."""
    left_path, right_path = Path(left), Path(right)
    left_view = read_view(left_path)  # a stereo container is refused here, saying --input
    if os.path.realpath(left_path) == os.path.realpath(right_path):
        raise IpassrError(f"{left_path}: given as both the left and the right view; one picture "
                          f"holding both views is passed as --input {left_path} --layout L "
                          f"(L one of: {layouts.layout_names()})")
    right_view = read_view(right_path)
    check_same_size(left_view, right_view, str(left_path), str(right_path))
    return StereoImage(left_view, right_view, None, "files", f"{left_path} and {right_path}")


def read_view(path: PathLike) -> np.ndarray:
    """One view from a file that holds one picture (a camera JPEG with an MPF preview counts)."""
    path = _existing_file(path)
    name = str(path)
    if containers.is_heif(path):
        count = containers.heic_image_count(path, name)
        if count != 1:
            raise _holds_both(name, f"a HEIC with {count} images")
        return pixels(containers.read_heic(path, name, whole_image=True)[0], name)
    with _opened(path) as image:
        frames = getattr(image, "n_frames", 1)
        if _is_stereo_mpo(image):
            raise _holds_both(name, "an MPO stereo photo")
        if frames > 1 and image.format != "MPO":  # an animation or a multi-page TIFF
            raise IpassrError(f"{name}: a {image.format} with {frames} frames, not one picture; "
                              "save each view as a single picture")
        return pixels(image, name)


def _holds_both(name: str, what: str) -> IpassrError:
    return IpassrError(f"{name}: {what}, not one view; pass the whole file as --input {name}")


def _photo(left: Image.Image, right: Image.Image, layout: Layout | None, kind: str,
           name: str) -> StereoImage:
    left_view, right_view = pixels(left, name), pixels(right, name)
    check_same_size(left_view, right_view, f"{name} (left view)", f"{name} (right view)")
    return StereoImage(left_view, right_view, layout, kind, name)


def _split(image: np.ndarray, layout: Layout, kind: str, name: str) -> StereoImage:
    left, right = layouts.split(image, layout, name)
    return StereoImage(left, right, layout, kind, name)


def _is_stereo_mpo(image: Image.Image) -> bool:
    """An MPO with two or more frames marked as views (not a camera JPEG's MPF preview)."""
    return image.format == "MPO" and len(containers.mpo_view_frames(image)) >= 2


def _has_jps_block(image: Image.Image) -> bool:
    return any(marker == "APP3" and payload.startswith(containers.JPS_ID)
               for marker, payload in getattr(image, "applist", []))


def _existing_file(path: PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, not an image")
    return path


class _opened:
    """``with _opened(path) as image``: Image.open with every failure as one ImageReadError line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Image.Image:
        try:
            self.image = Image.open(self.path)
        except Image.DecompressionBombError as exc:
            raise ImageReadError(f"{self.path}: {too_large(exc)}") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageReadError(f"{self.path}: not a readable image ({exc})") from exc
        return self.image

    def __exit__(self, kind, error, traceback) -> None:
        self.image.close()
        if isinstance(error, (OSError, SyntaxError, ValueError, EOFError)) and not isinstance(
                error, IpassrError):
            raise ImageReadError(f"{self.path}: truncated or damaged ({error})") from error


# --- output ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StereoTarget:
    """Where a stereo result goes: two files (``right`` set), or one file of ``kind`` image (in
    ``layout``, which may be ``anaglyph``), jps (in ``layout``) or mpo."""

    path: Path
    right: Path | None = None
    kind: str = "files"
    layout: str | None = None

    @property
    def paths(self) -> list[Path]:
        return [self.path] if self.right is None else [self.path, self.right]

    def describe(self) -> str:
        if self.right is not None:
            return f"{self.path} and {self.right}"
        return f"{self.path} ({self.kind.upper() if self.kind != 'image' else self.layout})"


def plan_target(output: PathLike | None = None, output_left: PathLike | None = None,
                output_right: PathLike | None = None, output_layout: str | None = None,
                source_layout: Layout | None = None) -> StereoTarget:
    """The output as asked for (one file, or left and right files), checked before any compute.

    One file's kind comes from its suffix (.mpo, .jps, else a picture); its layout is
    ``output_layout``, else the input's, else sbsl (JPS: sbsr, its cross-eyed default).
    """
    if output is None:
        if output_layout is not None:
            raise IpassrError(f"--output-layout {output_layout} is for one output file (--output), "
                              "not --output-left/--output-right")
        return StereoTarget(Path(output_left), Path(output_right))
    path = Path(output)
    suffix = path.suffix.lower()
    wanted = None if output_layout is None else (
        ANAGLYPH if output_layout.lower() == ANAGLYPH else layouts.get_layout(output_layout).name)
    if suffix in HEIC_SUFFIXES:
        raise IpassrError(f"{path}: cannot write a spatial HEIC (libheif has no way to write its "
                          "stereo group yet); write .mpo, a side-by-side .png or two files")
    if suffix in MPO_SUFFIXES:
        if wanted is not None:
            raise IpassrError(f"{path}: an MPO holds the views as frames; drop --output-layout {wanted}")
        return StereoTarget(path, kind="mpo")
    if suffix in JPS_SUFFIXES:
        if wanted == ANAGLYPH:
            raise IpassrError(f"{path}: a JPS holds two views, not an anaglyph; use .png or .jpg")
        inherited = source_layout.name if source_layout is not None else "sbsr"
        return StereoTarget(path, kind="jps", layout=wanted or inherited)
    if Image.registered_extensions().get(suffix) is None:
        raise IpassrError(f"{path}: unknown image format '{path.suffix}' (use .png, .jpg, .mpo or .jps)")
    inherited = source_layout.name if source_layout is not None else DEFAULT_IMAGE_LAYOUT
    return StereoTarget(path, kind="image", layout=wanted or inherited)


def write_stereo(target: StereoTarget, photo: StereoImage) -> None:
    """Write the views of ``photo`` as ``target`` asks, atomically (nothing half-written)."""
    layout = layouts.get_layout(target.layout) if target.layout not in (None, ANAGLYPH) else None
    left, right = layouts.convert_views(photo.left, photo.right, photo.layout, layout)
    if target.kind == "files":
        write_image(target.path, left)
        write_image(target.right, right)
    elif target.kind == "mpo":
        _write_bytes(target.path, containers.write_mpo(_jpeg_ready(left), _jpeg_ready(right)))
    elif target.kind == "jps":
        joined = _jpeg_ready(layouts.join(left, right, layout))
        _write_bytes(target.path, containers.write_jps(joined, layout.name))
    elif target.layout == ANAGLYPH:
        write_image(target.path, layouts.anaglyph(left, right))
    else:
        write_image(target.path, layouts.join(left, right, layout))


def _jpeg_ready(view: np.ndarray) -> Image.Image:
    """A view as an 8-bit RGB PIL image, what JPEG (MPO, JPS) can hold."""
    array = np.asarray(view)
    if array.dtype == np.uint16:
        array = np.round(array / 257.0).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] in (2, 4):  # JPEG has no alpha
        array = array[:, :, :-1]
    image = Image.fromarray(np.ascontiguousarray(array.squeeze()))
    return image.convert("RGB")


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
