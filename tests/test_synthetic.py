"""Synthetic stereo pairs from single images: integer warps, occlusions, segments, and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from ipassr.cli import main
from ipassr.errors import IpassrError
from ipassr.data.io import read_image, write_image
from ipassr.data.patches import PatchFile
from ipassr.data.synthetic import render_right_view, segment_disparity, synthetic_pair


def _two_layers(height: int = 12, width: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """A random image whose background sits at disparity 3 and whose columns 50-69 at 10."""
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    disparity = np.full((height, width), 3)
    disparity[:, 50:70] = 10
    return image, disparity


def test_right_view_is_the_left_view_moved_by_integer_disparities():
    left, disparity = _two_layers()
    right, occluded = render_right_view(left, disparity)
    ys, xs = np.nonzero(~occluded)
    np.testing.assert_array_equal(right[ys, xs - disparity[ys, xs]], left[ys, xs])
    # hidden in the right view: the left border (x < 3) and the background the foreground
    # (moved 7 columns further) covers, x 43-49
    expected = np.zeros_like(occluded)
    expected[:, :3] = expected[:, 43:50] = True
    np.testing.assert_array_equal(occluded, expected)


def test_disoccluded_pixels_take_the_background_to_their_right():
    left, disparity = _two_layers()
    right, _ = render_right_view(left, disparity)
    # right columns 60-66 see no left pixel (their background, left x 63-69, is the foreground):
    # they repeat right column 67, which is left column 70 (background)
    np.testing.assert_array_equal(right[:, 60:67], np.repeat(left[:, 70:71], 7, axis=1))


def test_disparity_is_one_integer_per_segment_within_range():
    image = np.zeros((60, 160, 3), dtype=np.uint8)
    image[:, :80] = (200, 30, 30)
    image[:30, 80:] = (30, 200, 30)
    image[30:, 80:] = (30, 30, 200)
    disparity = segment_disparity(image, np.random.default_rng(1), max_disparity=20)
    assert disparity.dtype.kind == "i" and disparity.min() >= 0 and disparity.max() <= 20
    for block in (disparity[:, :78], disparity[:28, 82:], disparity[32:, 82:]):  # away from edges
        assert np.unique(block).size == 1


def test_synthetic_pair_crops_the_columns_beyond_the_image():
    image = np.random.default_rng(2).integers(0, 256, (40, 120, 3), dtype=np.uint8)
    left, right, disparity = synthetic_pair(image, np.random.default_rng(3), max_disparity=16)
    assert left.shape == right.shape == (40, 104, 3) and disparity.shape == (40, 104)
    np.testing.assert_array_equal(left, image[:, :104])
    with pytest.raises(IpassrError, match="too narrow"):
        synthetic_pair(image[:, :32], np.random.default_rng(3), max_disparity=16)


def test_prepare_synthetic_writes_pairs_that_prepare_patches_reads(tmp_path, capsys):
    rng = np.random.default_rng(4)
    for name in ("a", "b"):
        write_image(tmp_path / "single" / f"{name}.png", rng.integers(0, 256, (72, 230, 3), dtype=np.uint8))
    write_image(tmp_path / "single" / "narrow.png", np.zeros((72, 30, 3), dtype=np.uint8))
    out = tmp_path / "pairs"
    args = ["prepare", "synthetic", str(tmp_path / "single"), "--output", str(out), "--max-disparity", "20"]
    assert main(args) == 0
    assert "2 synthetic pairs" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["a_L.png", "a_R.png", "b_L.png", "b_R.png"]
    first = read_image(out / "b_R.png")
    assert main(args) == 2  # pairs exist: refused without --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0  # the same seed makes the same pair
    np.testing.assert_array_equal(read_image(out / "b_R.png"), first)
    patches = tmp_path / "p.safetensors"
    assert main(["prepare", "patches", str(out), "--scale", "2", "--output", str(patches)]) == 0
    assert len(PatchFile(patches)) > 0


def test_prepare_synthetic_names_a_file_that_is_not_an_image(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    assert main(["prepare", "synthetic", str(bad), "--output", str(tmp_path / "out")]) == 2
    assert "broken.png" in capsys.readouterr().err
