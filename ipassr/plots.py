"""Line charts drawn with Pillow (``ipassr.figures``' font and ticks): training curves.

``line_chart`` draws a few named series (x, y) in one frame with gridlines, tick labels, axis
labels, a legend and a title, and returns an RGB uint8 array (H, W, 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .figures import BLACK, GREY, WHITE, font, format_tick, nice_ticks, stack, text_band, text_width

# Distinguishable line colours (Tableau 10's first eight)
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127)]
GRID = (225, 225, 225)


@dataclass
class Series:
    """One line: its legend name and points (x ascending); ``markers`` dots each point."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    markers: bool = False


def _finite(series: Sequence[Series], log_y: bool) -> list[Series]:
    """The series without non-finite points (and without y <= 0 on a log axis)."""
    kept = []
    for s in series:
        points = [(x, y) for x, y in zip(s.x, s.y)
                  if math.isfinite(x) and math.isfinite(y) and (y > 0 or not log_y)]
        if points:
            kept.append(Series(s.name, [p[0] for p in points], [p[1] for p in points], s.markers))
    return kept


def _log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten (and 2x, 5x when the range is under two decades) within [low, high]."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    steps = (1, 2, 5) if last - first <= 2 else (1,)
    return [m * 10.0 ** p for p in range(first, last + 1) for m in steps if low <= m * 10.0 ** p <= high]


def line_chart(series: Sequence[Series], title: str, x_label: str, y_label: str, *,
               width: int = 900, height: int = 380, log_y: bool = False,
               x_range: tuple[float, float] | None = None,
               empty_note: str = "nothing logged yet") -> np.ndarray:
    """A titled line chart of ``series`` with its legend above the frame (``log_y``: logarithmic
    y axis; ``x_range``: the x axis's ends, e.g. shared by charts stacked one above another)."""
    size = max(14, width // 55)
    series = _finite(series, log_y)
    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)
    if not series:
        draw.text((width / 2, height / 2), empty_note, fill=GREY, font=font(size), anchor="mm")
        return stack([text_band(title, width, round(size * 1.2)), np.asarray(canvas)])
    xs = [x for s in series for x in s.x]
    ys = [y for s in series for y in s.y]
    x_low, x_high = x_range if x_range is not None else (min(xs), max(xs))
    x_high = x_high if x_high > x_low else x_low + 1
    y_low, y_high = min(ys), max(ys)
    if log_y:
        y_low, y_high = y_low / 1.1, y_high * 1.1
        to_y = math.log10
        y_ticks = _log_ticks(y_low, y_high) or [y_low, y_high]
    else:
        pad = (y_high - y_low) * 0.05 or abs(y_high) * 0.05 or 1.0
        y_low, y_high = y_low - pad, y_high + pad
        to_y = float
        y_ticks = nice_ticks(y_low, y_high, 5)
    left = max(text_width(format_tick(v), size) for v in y_ticks) + round(size * 2.2)
    right, top, bottom = size, size // 2, round(size * 3)
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float, y: float) -> tuple[float, float]:
        fx = (x - x_low) / (x_high - x_low)
        fy = (to_y(y) - to_y(y_low)) / (to_y(y_high) - to_y(y_low))
        return left + fx * plot_w, top + (1 - fy) * plot_h

    for value in y_ticks:
        _, y = px(x_low, value)
        draw.line([(left, y), (left + plot_w, y)], fill=GRID)
        draw.text((left - size // 3, y), format_tick(value), fill=BLACK, font=font(size), anchor="rm")
    for value in nice_ticks(x_low, x_high, 6):
        x, _ = px(value, y_low if not log_y else y_low)
        draw.line([(x, top), (x, top + plot_h)], fill=GRID)
        draw.text((x, top + plot_h + size // 3), format_tick(value), fill=BLACK, font=font(size),
                  anchor="mt")
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=GREY)
    line = max(2, size // 8)
    for index, s in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        points = [px(x, y) for x, y in zip(s.x, s.y)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=line, joint="curve")
        if s.markers or len(points) == 1:
            r = line * 2
            for x, y in points:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    draw.text((left + plot_w / 2, height - size * 0.4), x_label, fill=BLACK, font=font(size),
              anchor="md")
    label = Image.new("RGB", (plot_h, round(size * 1.4)), WHITE)
    ImageDraw.Draw(label).text((plot_h / 2, label.height / 2), y_label, fill=BLACK,
                               font=font(size), anchor="mm")
    canvas.paste(label.rotate(90, expand=True), (0, top))
    return stack([text_band(title, width, round(size * 1.2)), legend(series, width, size),
                  np.asarray(canvas)])


def legend(series: Sequence[Series], width: int, size: int) -> np.ndarray:
    """The series' names with their colours, in rows across ``width`` (centred)."""
    small = max(12, round(size * 0.85))
    entries = [(s.name, PALETTE[i % len(PALETTE)], text_width(s.name, small) + small * 3)
               for i, s in enumerate(series)]
    rows: list[list] = [[]]
    for entry in entries:
        if rows[-1] and sum(e[2] for e in rows[-1]) + entry[2] > width - small:
            rows.append([])
        rows[-1].append(entry)
    line_height = round(small * 1.4)
    band = Image.new("RGB", (width, line_height * len(rows)), WHITE)
    draw = ImageDraw.Draw(band)
    for r, row in enumerate(rows):
        x = (width - sum(e[2] for e in row)) / 2
        y = r * line_height + line_height / 2
        for name, colour, entry_width in row:
            draw.line([(x, y), (x + small * 1.5, y)], fill=colour, width=max(3, small // 4))
            draw.text((x + small * 2, y), name, fill=BLACK, font=font(small), anchor="lm")
            x += entry_width
    return np.asarray(band)


__all__ = ["Series", "line_chart", "legend", "PALETTE"]
