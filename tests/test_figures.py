"""``ipassr.figures``: titles, labels sized to the picture, colour bars that say what colour means."""

from __future__ import annotations

import numpy as np

from ipassr.figures import (MIN_WIDTH, ColourScale, colormap, figure, nice_ticks, text_size,
                            with_axes)
from ipassr.visualize import comparison


def rows_with_ink(image: np.ndarray, threshold: int = 100) -> np.ndarray:
    """Indices of the rows holding dark (text) pixels."""
    return np.flatnonzero((image.max(axis=2) < threshold).any(axis=1))


def find_rows(big: np.ndarray, small: np.ndarray) -> list[int]:
    """Top offsets where ``small`` appears in ``big``, horizontally centred as ``stack`` puts it."""
    left = (big.shape[1] - small.shape[1]) // 2
    return [top for top in range(big.shape[0] - small.shape[0] + 1)
            if np.array_equal(big[top:top + small.shape[0], left:left + small.shape[1]], small)]


def test_labels_grow_with_the_picture_so_they_read_when_it_is_shown_small():
    """A 4400-pixel-wide comparison (visualize's on a large pair) shown 900 px wide (a README
    column) keeps capitals of its panel names 12 px tall (a 16 px font); before, the names
    were 10 px tall at full size, 2 px on such a screen."""
    panel = np.full((600, 2200, 3), 200, np.uint8)
    picture = comparison({"bicubic": panel, "iPASSR": panel}, crop=(0, 0, 100, 20))
    ink = rows_with_ink(picture[:panel.shape[0] // 4])  # the name band above the panels
    name_height = ink.max() - ink.min() + 1
    assert name_height * 900 / picture.shape[1] >= 12
    assert text_size(200) == text_size(300) == 14  # small pictures keep a floor size


def test_small_maps_are_enlarged_under_a_title_with_a_colour_bar():
    values = np.linspace(0, 1, 20 * 36).reshape(20, 36)
    heat = colormap(values, 0.0, 1.0)
    picture = figure(heat, "a title", ColourScale(0.0, 1.0, "V (unitless)"))
    factor = -(-MIN_WIDTH // 36)
    enlarged = np.repeat(np.repeat(heat, factor, 0), factor, 1)
    tops = find_rows(picture, enlarged)
    assert len(tops) == 1 and tops[0] > 0  # below the title, pixels kept exactly
    assert rows_with_ink(picture[:tops[0]]).size  # the title is drawn
    below = picture[tops[0] + enlarged.shape[0]:]
    bar_rows = [r for r in below if (r == colormap(np.array([[0.0]]))[0, 0]).all(axis=1).any()
                and (r == colormap(np.array([[1.0]]))[0, 0]).all(axis=1).any()]
    assert bar_rows  # the gradient's two ends, from the same colour map
    assert rows_with_ink(below).size  # ticks and the label


def test_axes_and_ticks():
    assert nice_ticks(0, 35) == [0, 10, 20, 30]
    assert nice_ticks(-57.3, 51.2) == [-50, 0, 50]
    assert nice_ticks(0, 1) == [0, 0.25, 0.5, 0.75, 1]
    image = colormap(np.random.default_rng(0).random((100, 200)))
    framed = with_axes(image, "x (px)", "y (px)", 50, 25)
    at = [(top, left) for top in range(framed.shape[0] - 99) for left in range(framed.shape[1] - 199)
          if np.array_equal(framed[top:top + 100, left:left + 200], image)]
    assert len(at) == 1 and at[0][1] > 0  # the map unchanged, tick labels to its left
    assert rows_with_ink(framed[100:]).size  # and under it
