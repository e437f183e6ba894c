"""Pictures that read on their own: a title, labels sized to the picture, colour bars with units.

Every PNG that ``demo``, ``visualize``, ``train`` and ``serve`` write is drawn here with Pillow
and the font Pillow itself ships (Aileron Regular, CC0, scalable through FreeType; no extra
dependency, the same pixels on every machine). Text scales with the canvas: a 4400-pixel-wide
comparison gets labels about 100 px tall, so they stay legible when a screen shows the whole
picture at a fifth of its size; small maps (a 36-pixel attention row) are first enlarged with
nearest-neighbour sampling to ``MIN_WIDTH`` so that a readable title fits over them.

Images are RGB uint8 arrays (H, W, 3) in and out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from .errors import IpassrError

MIN_WIDTH = 480  # narrower content is enlarged (nearest) to at least this width
TEXT_PER_WIDTH = 1 / 45  # label height per pixel of canvas width (readable at 1/5 scale)
MIN_TEXT = 14  # px: the smallest label, for pictures shown at their own size
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (110, 110, 110)

# Viridis-like colour map: anchors at 0, 0.25, 0.5, 0.75, 1 (dark purple -> teal -> yellow).
_ANCHORS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
                    dtype=np.float64)


def colormap(values: np.ndarray, low: float | None = None, high: float | None = None
             ) -> np.ndarray:
    """Map a 2-D array to RGB uint8 (H, W, 3); ``low``/``high`` default to its min and max."""
    values = np.asarray(values, dtype=np.float64)
    low = float(np.nanmin(values)) if low is None else low
    high = float(np.nanmax(values)) if high is None else high
    scaled = np.clip((values - low) / max(high - low, 1e-12), 0, 1) * (len(_ANCHORS) - 1)
    index = np.minimum(scaled.astype(np.int64), len(_ANCHORS) - 2)
    fraction = (scaled - index)[..., None]
    rgb = _ANCHORS[index] * (1 - fraction) + _ANCHORS[index + 1] * fraction
    return np.round(rgb).astype(np.uint8)


@lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's own scalable font at ``size`` pixels (needs Pillow's FreeType support)."""
    if not features.check("freetype2"):
        raise IpassrError("this Pillow was built without FreeType, so pictures cannot be "
                          "labelled: pip install --force-reinstall pillow")
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


def text_size(canvas_width: int) -> int:
    """Label height in pixels for a picture ``canvas_width`` wide."""
    return max(MIN_TEXT, round(canvas_width * TEXT_PER_WIDTH))


def text_width(text: str, size: int) -> int:
    """How wide ``text`` is drawn at ``size``."""
    return math.ceil(font(size).getlength(text))


def fit_text(text: str, size: int, width: int) -> int:
    """The largest size <= ``size`` at which ``text`` fits in ``width`` pixels."""
    while size > 8 and text_width(text, size) > width:
        size -= 1
    return size


def enlarge(image: np.ndarray, min_width: int = MIN_WIDTH) -> np.ndarray:
    """Repeat pixels by the integer factor that makes ``image`` at least ``min_width`` wide."""
    factor = math.ceil(min_width / image.shape[1])
    if factor <= 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def text_band(text: str, width: int, size: int, colour=BLACK) -> np.ndarray:
    """A white band ``width`` wide holding ``text`` centred (shrunk to fit)."""
    size = fit_text(text, size, width - 4)
    band = Image.new("RGB", (width, round(size * 1.5)), WHITE)
    ImageDraw.Draw(band).text((width / 2, band.height / 2), text, fill=colour, font=font(size),
                              anchor="mm")
    return np.asarray(band)


def stack(parts: Sequence[np.ndarray], gap: int = 0) -> np.ndarray:
    """Images one above the other, centred on a white canvas as wide as the widest."""
    width = max(p.shape[1] for p in parts)
    rows = []
    for i, part in enumerate(parts):
        pad = width - part.shape[1]
        rows.append(np.pad(part, ((0, gap if i < len(parts) - 1 else 0), (pad // 2, pad - pad // 2),
                                  (0, 0)), constant_values=255))
    return np.concatenate(rows, axis=0)


def beside(parts: Sequence[np.ndarray], gap: int) -> np.ndarray:
    """Images next to each other, top-aligned, with white gaps."""
    height = max(p.shape[0] for p in parts)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, gap if i < len(parts) - 1 else 0), (0, 0)),
                     constant_values=255) for i, p in enumerate(parts)]
    return np.concatenate(padded, axis=1)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) within [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((high - first) / step + 1e-9) + 1)]


def format_tick(value: float) -> str:
    """A tick label: up to four significant digits, no trailing zeros."""
    return f"{value:.4g}"


@dataclass
class ColourScale:
    """What the colours of a picture mean: the value range, its label with units, the ticks.

    ``position`` maps a value to its place on the bar in [0, 1] (default linear), e.g. a square
    root for maps drawn with gamma 0.5.
    """

    low: float
    high: float
    label: str
    ticks: Sequence[float] | None = None
    position: Callable[[float], float] | None = None
    tick_labels: dict[float, str] = field(default_factory=dict)

    def place(self, value: float) -> float:
        if self.position is not None:
            return self.position(value)
        return (value - self.low) / max(self.high - self.low, 1e-12)


def colour_bar(scale: ColourScale, width: int, size: int) -> np.ndarray:
    """A horizontal colour bar ``width`` wide: the gradient, ticks, and the label under them."""
    bar_width, bar_height, margin = round(width * 0.7), max(8, round(size * 0.8)), size // 3
    gradient = colormap(np.linspace(0, 1, bar_width)[None].repeat(bar_height, 0), 0.0, 1.0)
    canvas = Image.new("RGB", (width, margin + bar_height + round(size * 1.4)), WHITE)
    left = (width - bar_width) // 2
    canvas.paste(Image.fromarray(gradient), (left, margin))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([left - 1, margin - 1, left + bar_width, margin + bar_height], outline=GREY)
    ticks = scale.ticks if scale.ticks is not None else nice_ticks(scale.low, scale.high)
    tick_size = max(10, round(size * 0.8))
    for value in ticks:
        x = left + min(max(scale.place(value), 0.0), 1.0) * (bar_width - 1)
        draw.line([(x, margin + bar_height), (x, margin + bar_height + size // 4)], fill=BLACK,
                  width=max(1, size // 12))
        draw.text((x, margin + bar_height + size // 4), scale.tick_labels.get(value, format_tick(value)),
                  fill=BLACK, font=font(tick_size), anchor="mt")
    return stack([np.asarray(canvas), text_band(scale.label, width, size)])


def figure(image: np.ndarray, title: str, scale: ColourScale | None = None,
           note: str | None = None) -> np.ndarray:
    """``image`` (enlarged if small) under a title, with a colour bar and a note below."""
    return panels({"": image}, title, scale, note)


def panels(images: dict[str, np.ndarray], title: str, scale: ColourScale | None = None,
           note: str | None = None) -> np.ndarray:
    """Images side by side, each under its caption, one title above, one colour bar below."""
    enlarged = {name: enlarge(im) for name, im in images.items()}
    width = sum(im.shape[1] for im in enlarged.values())
    size = text_size(width)
    gap = max(4, size // 2)
    width += gap * (len(images) - 1)
    columns = [stack([text_band(name, im.shape[1], size), im]) if name else im
               for name, im in enlarged.items()]
    parts = [text_band(title, width, round(size * 1.25)), beside(columns, gap)]
    if scale is not None:
        parts.append(colour_bar(scale, width, size))
    if note:
        parts.append(text_band(note, width, round(size * 0.8), GREY))
    return stack(parts)


def with_axes(image: np.ndarray, x_label: str, y_label: str, x_max: int, y_max: int
              ) -> np.ndarray:
    """A map with tick labels along its left and bottom edges: x in [0, x_max), y in [0, y_max).

    ``image`` may be enlarged from the (y_max, x_max) data; ticks are placed in data units.
    """
    size = text_size(max(image.shape[1], MIN_WIDTH))
    height, width = image.shape[:2]
    y_ticks = nice_ticks(0, y_max - 1, 5)
    margin = max(text_width(format_tick(v), size) for v in y_ticks) + size // 2
    canvas = Image.new("RGB", (margin + width + size, height + round(size * 1.4)), WHITE)
    canvas.paste(Image.fromarray(image), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for value in nice_ticks(0, x_max - 1, 5):
        x = margin + (value + 0.5) * width / x_max
        draw.line([(x, height), (x, height + size // 4)], fill=BLACK)
        draw.text((x, height + size // 4), format_tick(value), fill=BLACK, font=font(size),
                  anchor="mt")
    for value in y_ticks:
        y = (value + 0.5) * height / y_max
        draw.line([(margin - size // 4, y), (margin - 1, y)], fill=BLACK)
        draw.text((margin - size // 3, y), format_tick(value), fill=BLACK, font=font(size),
                  anchor="rm")
    body = np.asarray(canvas)
    label = np.asarray(Image.fromarray(text_band(y_label, body.shape[0], size)).rotate(90,
                                                                                     expand=True))
    return stack([beside([label, body], 0), text_band(x_label, body.shape[1] + label.shape[1],
                                                      size)])


__all__ = ["colormap", "font", "text_size", "figure", "panels", "with_axes", "ColourScale",
           "colour_bar", "nice_ticks", "enlarge", "stack", "beside", "text_band"]
