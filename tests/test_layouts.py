"""Stereo layouts: every layout round-trips exactly, splits without copying, refuses what it cannot split."""

import numpy as np
import pytest

from ipassr.data import layouts
from ipassr.errors import IpassrError

ALL_NAMES = [*layouts.LAYOUTS, *layouts.ALIASES]


def _views(shape=(6, 8, 3), dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    return rng.integers(0, peak, shape, dtype=dtype), rng.integers(0, peak, shape, dtype=dtype)


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("shape,dtype", [((6, 8, 3), np.uint8), ((5, 7), np.uint16), ((4, 6, 4), np.uint8)])
def test_every_layout_round_trips_exactly(name, shape, dtype):
    left, right = _views(shape, dtype)
    joined = layouts.join(left, right, name)
    layout = layouts.get_layout(name)
    assert joined.shape[layout.axis] == 2 * shape[layout.axis]
    got_left, got_right = layouts.split(joined, name)
    assert np.array_equal(got_left, left) and np.array_equal(got_right, right)
    assert np.shares_memory(got_left, joined) and np.shares_memory(got_right, joined)
    assert np.array_equal(layouts.join(got_left, got_right, name), joined)


def test_which_view_goes_where():
    left, right = np.zeros((2, 3), np.uint8), np.ones((2, 3), np.uint8)
    assert layouts.join(left, right, "sbsl")[0].tolist() == [0, 0, 0, 1, 1, 1]
    assert layouts.join(left, right, "sbsr")[0].tolist() == [1, 1, 1, 0, 0, 0]  # cross-eyed
    assert layouts.join(left, right, "abl")[:, 0].tolist() == [0, 0, 1, 1]
    assert layouts.join(left, right, "tb2r")[:, 0].tolist() == [1, 1, 0, 0]


def test_half_layouts_show_each_eye_at_full_size():
    assert layouts.get_layout("sbs2l").display_size(480, 320) == (480, 640)
    assert layouts.get_layout("ab2r").display_size(240, 640) == (480, 640)
    assert layouts.get_layout("tbl").display_size(480, 640) == (480, 640)
    assert layouts.get_layout("sbs2r").full.name == "sbsr"
    assert layouts.get_layout("tb2l").full.name == "tbl"


def test_an_odd_size_cannot_split():
    with pytest.raises(IpassrError, match=r"pair\.png: its width \(7 px\) is odd.*sbsl"):
        layouts.split(np.zeros((4, 7, 3), np.uint8), "sbsl", name="pair.png")
    with pytest.raises(IpassrError, match=r"height \(5 px\) is odd.*tb2l"):
        layouts.split(np.zeros((5, 4, 3), np.uint8), "ab2l")


def test_an_unknown_layout_names_the_choices():
    with pytest.raises(IpassrError, match=r"unknown stereo layout 'sbs'.*sbsl, sbsr, sbs2l.*abl"):
        layouts.get_layout("sbs")


def test_views_of_different_sizes_cannot_join():
    with pytest.raises(IpassrError, match="8x6 and 7x6"):
        layouts.join(np.zeros((6, 8)), np.zeros((6, 7)), "sbsl")


def test_anaglyph_sends_the_left_view_to_red_and_the_right_to_cyan():
    white, black = np.full((2, 2, 3), 255, np.uint8), np.zeros((2, 2, 3), np.uint8)
    assert layouts.anaglyph(white, black)[0, 0].tolist() == [255, 0, 0]
    assert layouts.anaglyph(black, white)[0, 0].tolist() == [0, 255, 255]
    grey = np.full((2, 2), 40000, np.uint16)
    out = layouts.anaglyph(grey, grey)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint16
    assert 0 < out[0, 0, 0] < 65535  # mid grey stays mid grey on the red channel


def test_anaglyph_keeps_the_larger_alpha():
    left, right = _views((2, 2, 4))
    left[..., 3], right[..., 3] = 10, 200
    assert (layouts.anaglyph(left, right)[..., 3] == 200).all()


def test_half_size_eyes_are_stretched_to_their_display_aspect_and_back():
    left, right = _views((6, 5, 3))
    sbs2 = layouts.get_layout("sbs2l")
    wide_left, wide_right = layouts.convert_views(left, right, sbs2, layouts.get_layout("sbsl"))
    assert wide_left.shape == (6, 10, 3) and wide_left.dtype == np.uint8
    back_left, _ = layouts.convert_views(wide_left, wide_right, None, sbs2)
    assert back_left.shape == (6, 5, 3)
    tall_left, _ = layouts.convert_views(left, right, layouts.get_layout("tb2r"), None)
    assert tall_left.shape == (12, 5, 3)
    flat = np.full((4, 4), 1000, np.uint16)
    assert (layouts.convert_views(flat, flat, sbs2, None)[0] == 1000).all()  # a flat eye stays flat
    assert layouts.convert_views(left, right, sbs2, layouts.get_layout("sbs2r"))[0] is left
    turned, _ = layouts.convert_views(left, right, sbs2, layouts.get_layout("tb2l"))
    assert turned.shape == (3, 10, 3)  # half width -> half height: the eye keeps its aspect
