"""The correspondence explorer: for one left-view pixel, that row of the attention M_R->L drawn as
a heat line across the right view, its peak marked, and the disparity it implies.

The peak is the most attended right column (the argmax that ``ipassr evaluate --attention``
scores); the disparity is ``x_left - x_right`` in LR pixels. Pictures are enlarged like every
figure (``ipassr.figures.enlarge``): a click on the enlarged left view maps back by
``explorer_scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..figures import MIN_WIDTH, ColourScale, colormap, enlarge, figure
from ..visualize import ATTENTION_GAMMA

MARK = (255, 0, 255)  # magenta: not in the colour map, not in a grey picture


@dataclass
class Exploration:
    """What the explorer found for left pixel (x, y) (LR px): the right column of the peak, its
    weight, the expected column offset, V_L there; ``picture`` the right view with the heat
    line (None, with ``note`` saying why, when the network has no attention)."""

    x: int
    y: int
    picture: np.ndarray | None
    peak_x: int | None = None
    weight: float | None = None
    expected_x: float | None = None
    valid: float | None = None
    note: str = ""

    @property
    def disparity(self) -> int | None:
        return None if self.peak_x is None else self.x - self.peak_x

    def describe(self) -> str:
        """The explorer's sentence under its picture (Markdown)."""
        if self.picture is None:
            return self.note
        text = (f"Left pixel ({self.x}, {self.y}): its peak in the right view is pixel "
                f"({self.peak_x}, {self.y}), weight {self.weight:.2f}, so its **disparity is "
                f"{self.disparity} LR px** (x_left - x_right); the row's mean column gives "
                f"{self.x - self.expected_x:.1f} px.")
        if self.valid is not None:
            seen = ("seen in the right view: its features take the right view's"
                    if self.valid >= 0.5 else
                    "occluded: it keeps its own features")
            text += f" V_L there is {self.valid:.2f} ({seen})."
        return text


def explorer_scale(width: int) -> int:
    """The factor ``enlarge`` applies to a view ``width`` LR px wide (clicks divide by it)."""
    return max(1, math.ceil(MIN_WIDTH / width))


def mark_pixel(view: np.ndarray, x: int, y: int) -> np.ndarray:
    """The enlarged view with a magenta ring around pixel (x, y)."""
    k = explorer_scale(view.shape[1])
    picture = Image.fromarray(enlarge(view))
    _ring(ImageDraw.Draw(picture), (x + 0.5) * k, (y + 0.5) * k, k, view.shape[1])
    return np.asarray(picture)


def _ring(draw: ImageDraw.ImageDraw, cx: float, cy: float, k: int, width: int) -> None:
    radius = max(8, 3 * k, width * k // 50)
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=MARK,
                 width=max(2, radius // 4))


def explore_row(right: np.ndarray, weights: np.ndarray, x: int, y: int, network: str,
                valid: float | None) -> Exploration:
    """The heat line of ``weights`` (M_R->L[y, x, :], (w,)) over the right view (h, w, 3)."""
    peak_x = int(np.argmax(weights))
    peak = max(float(weights[peak_x]), 1e-12)
    expected = float(weights @ np.arange(weights.size) / max(float(weights.sum()), 1e-12))
    k = explorer_scale(right.shape[1])
    grey = enlarge(right).astype(np.float64).mean(axis=2, keepdims=True).repeat(3, axis=2)
    canvas = np.round(grey * 0.6).astype(np.uint8)  # dimmed, so the line stands out
    heat = np.repeat(colormap(np.power(weights / peak, ATTENTION_GAMMA)[None], 0.0, 1.0), k, 1)
    half = max(2, k, right.shape[1] * k // 200)
    top, bottom = max(0, y * k + k // 2 - half), min(canvas.shape[0], y * k + k // 2 + half + 1)
    canvas[top:bottom] = heat
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    column = (x + 0.5) * k  # the clicked pixel's own column: the disparity is the way to the ring
    for y0, y1 in ((top - 3 * half, top - 1), (bottom, bottom + 3 * half - 1)):
        draw.line([(column, y0), (column, y1)], fill=(255, 255, 255), width=max(1, k // 2))
    _ring(draw, (peak_x + 0.5) * k, (y + 0.5) * k, k, right.shape[1])
    scale = ColourScale(0.0, 1.0, f"attention weight / its peak (gamma {ATTENTION_GAMMA}); "
                        "ring: the peak; white ticks: the clicked column",
                        ticks=(0, 0.05, 0.25, 0.5, 1), position=lambda v: v ** ATTENTION_GAMMA)
    title = f"Right view: where {network} looks for left pixel ({x}, {y}) (row {y} of M_R->L)"
    return Exploration(x, y, figure(np.asarray(picture), title, scale), peak_x, peak,
                       expected, valid)


__all__ = ["Exploration", "explore_row", "explorer_scale", "mark_pixel", "MARK"]
