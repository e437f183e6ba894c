"""Stereo layouts: two views in one image, named as FFmpeg's ``stereo3d`` filter names them.

A layout puts the two views side by side (``sbs``) or one above the other (``tb``, alias
``ab``), the left view first (``...l``) or the right view first (``...r``; ``sbsr`` is
cross-eyed). The half-size layouts (``sbs2l``, ``tb2l``, ...) store each eye squeezed to half
width or half height; their views are split and joined as stored, and ``display_size`` says
how large each eye is meant to be shown. Images are arrays (H, W) or (H, W, C) of any dtype;
``split`` returns views of its input (no copy), ``join`` one new array; ``convert_views``
stretches half-size eyes back to their display aspect (or squeezes full-size ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import IpassrError


@dataclass(frozen=True)
class Layout:
    """Where the two views sit in one image: along ``axis`` (1 = side by side, 0 = top-bottom)."""

    name: str
    axis: int
    left_first: bool
    half: bool  # each eye stored at half width (sbs2) or half height (tb2)

    @property
    def full(self) -> "Layout":
        """The same arrangement with full-size eyes (sbs2l -> sbsl, tb2r -> tbr)."""
        return LAYOUTS[self.name.replace("2", "")]

    def display_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) an eye stored at (height, width) is meant to be shown at."""
        if not self.half:
            return height, width
        return (height * 2, width) if self.axis == 0 else (height, width * 2)


LAYOUTS: dict[str, Layout] = {
    name: Layout(name, axis, left_first, half)
    for name, axis, left_first, half in [
        ("sbsl", 1, True, False), ("sbsr", 1, False, False),
        ("sbs2l", 1, True, True), ("sbs2r", 1, False, True),
        ("tbl", 0, True, False), ("tbr", 0, False, False),
        ("tb2l", 0, True, True), ("tb2r", 0, False, True),
    ]
}
ALIASES: dict[str, str] = {"abl": "tbl", "abr": "tbr", "ab2l": "tb2l", "ab2r": "tb2r"}
ANAGLYPH = "anaglyph"  # an output only: it cannot be split back into two views


def layout_names() -> str:
    """The accepted layout names, for error messages and --help."""
    return ", ".join([*LAYOUTS, *ALIASES])


def get_layout(name: str | Layout) -> Layout:
    """The layout of that name (aliases allowed); IpassrError naming the choices otherwise."""
    if isinstance(name, Layout):
        return name
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in LAYOUTS:
        raise IpassrError(f"unknown stereo layout '{name}' (choose one of: {layout_names()})")
    return LAYOUTS[key]


def split(image: np.ndarray, layout: str | Layout, name: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """(H, W[, C]) image -> (left, right) views of it, without copying; IpassrError if it cannot split."""
    layout = get_layout(layout)
    size = image.shape[layout.axis]
    if size < 2 or size % 2:
        what = "width" if layout.axis == 1 else "height"
        raise IpassrError(f"{name}: its {what} ({size} px) is odd, so it cannot hold two views "
                          f"in layout {layout.name} (is the layout right?)")
    half = size // 2
    first, second = (image[:half], image[half:]) if layout.axis == 0 else (image[:, :half], image[:, half:])
    return (first, second) if layout.left_first else (second, first)


def join(left: np.ndarray, right: np.ndarray, layout: str | Layout,
         out: np.ndarray | None = None) -> np.ndarray:
    """Two views of one shape -> one image in ``layout`` (written into ``out`` when given)."""
    layout = get_layout(layout)
    if left.shape != right.shape:
        raise IpassrError(f"the two views are {_size(left)} and {_size(right)}: "
                          "they must have the same size to be joined")
    pair = (left, right) if layout.left_first else (right, left)
    return np.concatenate(pair, axis=layout.axis, out=out)


def convert_views(left: np.ndarray, right: np.ndarray, source: Layout | None,
                  target: Layout | None) -> tuple[np.ndarray, np.ndarray]:
    """Views stored for ``source`` -> views stored for ``target`` (None: full-size eyes).

    A half-size eye going to a full-size output (sbsl, tbl, MPO, two files, anaglyph) is stretched
    back to its display aspect; a full-size eye going to a half-size layout is squeezed (both
    MATLAB bicubic along the one axis, rounded back to the dtype); otherwise the views pass as they are.
    """
    source_half = source is not None and source.half
    target_half = target is not None and target.half
    if source_half and target_half and source.axis == target.axis:
        return left, right
    views = [left, right]
    if source_half:
        views = [_resize_one_axis(view, source.axis, 2.0) for view in views]
    if target_half:
        views = [_resize_one_axis(view, target.axis, 0.5) for view in views]
    return views[0], views[1]


def _resize_one_axis(image: np.ndarray, axis: int, factor: float) -> np.ndarray:
    """MATLAB bicubic along one axis by ``factor`` (x2 or /2, antialiased), in the image's dtype."""
    from .resize import output_size, resize_axis

    values = resize_axis(image, axis, output_size(image.shape[axis], factor), factor)
    if image.dtype.kind in "ui":
        info = np.iinfo(image.dtype)
        return np.clip(np.floor(values + 0.5), info.min, info.max).astype(image.dtype)
    return values.astype(image.dtype)


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


# Dubois's least-squares red-cyan projection ("Conversion of a stereo pair to anaglyph with the
# least-squares projection method", 2009): rows give the output R, G, B from linear-light RGB.
_DUBOIS_LEFT = np.array([[0.437, 0.449, 0.164], [-0.062, -0.062, -0.024], [-0.048, -0.050, -0.017]])
_DUBOIS_RIGHT = np.array([[-0.011, -0.032, -0.007], [0.377, 0.761, 0.009], [-0.026, -0.093, 1.234]])


def anaglyph(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Red-cyan Dubois anaglyph of two views, (H, W[, C]) -> (H, W, 3) (RGBA when they have alpha).

    Mixed in linear light (sRGB decoded and re-encoded) as Dubois defines it; grey views count as
    RGB; the output alpha is the larger of the two, so what either eye sees stays drawn.
    """
    if left.shape != right.shape:
        raise IpassrError(f"the two views are {_size(left)} and {_size(right)}: "
                          "they must have the same size for an anaglyph")
    peak = float(np.iinfo(left.dtype).max) if left.dtype.kind in "ui" else 1.0
    colour_l, alpha_l = _colour_and_alpha(left, peak)
    colour_r, alpha_r = _colour_and_alpha(right, peak)
    mixed = _srgb_to_linear(colour_l) @ _DUBOIS_LEFT.T + _srgb_to_linear(colour_r) @ _DUBOIS_RIGHT.T
    result = _linear_to_srgb(np.clip(mixed, 0.0, 1.0))
    if alpha_l is not None:
        result = np.concatenate([result, np.maximum(alpha_l, alpha_r)], axis=2)
    if left.dtype.kind in "ui":
        return np.round(result * peak).astype(left.dtype)
    return result.astype(left.dtype)


def _colour_and_alpha(image: np.ndarray, peak: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W[, C]) -> RGB float in [0, 1] (H, W, 3) and alpha (H, W, 1) or None."""
    values = np.asarray(image, dtype=np.float64) / peak
    if values.ndim == 2:
        values = values[:, :, None]
    channels = values.shape[2]
    alpha = values[:, :, channels - 1:] if channels in (2, 4) else None
    colour = values[:, :, :3] if channels >= 3 else np.repeat(values[:, :, :1], 3, axis=2)
    return colour, alpha


def _srgb_to_linear(values: np.ndarray) -> np.ndarray:
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(values: np.ndarray) -> np.ndarray:
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055)
