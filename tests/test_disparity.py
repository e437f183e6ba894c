"""Ground-truth readers, hole filling, error rates, SGBM on real and synthetic pairs, Table-5 CLI run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ipassr.cli import main
from ipassr.data.disparity import (fill_holes, num_disparities, read_disparity, read_pfm, score_disparity,
                              sgbm_disparity, write_pfm)
from ipassr.errors import IpassrError


def test_pfm_round_trip_with_invalid_pixels(tmp_path):
    disparity = np.arange(12, dtype=np.float32).reshape(3, 4) + 0.5
    disparity[1, 2] = np.nan
    write_pfm(tmp_path / "d.pfm", disparity)
    raw = (tmp_path / "d.pfm").read_bytes()
    assert raw.startswith(b"Pf\n4 3\n-1\n")
    # PFM stores the bottom row first.
    assert np.frombuffer(raw[-16:], "<f4").tolist() == disparity[0].tolist()
    back = read_pfm(tmp_path / "d.pfm")
    np.testing.assert_array_equal(np.isnan(back), np.isnan(disparity))
    np.testing.assert_array_equal(back[~np.isnan(back)], disparity[~np.isnan(disparity)])


def test_big_endian_pfm_and_bad_files(tmp_path):
    values = np.array([[1.0, np.inf], [3.0, 4.0]], dtype=">f4")
    (tmp_path / "be.pfm").write_bytes(b"Pf\n2 2\n1.0\n" + values[::-1].tobytes())
    back = read_disparity(tmp_path / "be.pfm")
    assert back[0, 0] == 1.0 and np.isnan(back[0, 1]) and back[1, 1] == 4.0
    (tmp_path / "short.pfm").write_bytes(b"Pf\n2 2\n-1\n" + b"\x00" * 5)
    with pytest.raises(IpassrError, match="short.pfm: truncated"):
        read_pfm(tmp_path / "short.pfm")
    (tmp_path / "x.pfm").write_bytes(b"P6\n2 2\n255\n")
    with pytest.raises(IpassrError, match="x.pfm: not a PFM"):
        read_pfm(tmp_path / "x.pfm")


def test_kitti_png_disparity(tmp_path):
    raw = np.array([[0, 256], [512 + 128, 65535]], dtype=np.uint16)
    Image.fromarray(raw).save(tmp_path / "000000_10.png")
    disparity = read_disparity(tmp_path / "000000_10.png")
    assert np.isnan(disparity[0, 0]) and disparity[0, 1] == 1.0 and disparity[1, 0] == 2.5
    assert disparity[1, 1] == pytest.approx(65535 / 256)


def test_fill_holes_takes_background_neighbour():
    d = np.array([[np.nan, 5.0, np.nan, np.nan, 2.0, np.nan],
                  [np.nan] * 6], dtype=np.float32)
    filled = fill_holes(d)
    assert filled[0].tolist() == [5.0, 5.0, 2.0, 2.0, 2.0, 2.0]
    assert filled[1].tolist() == [0.0] * 6


def test_score_by_hand():
    gt = np.array([[10.0, 10.0, 10.0, np.nan]], dtype=np.float32)
    estimate = np.array([[10.5, 12.5, np.nan, 99.0]], dtype=np.float32)    # third filled from 12.5
    score = score_disparity(estimate, gt)
    assert score.epe == pytest.approx((0.5 + 2.5 + 2.5) / 3)
    assert score.bad1 == pytest.approx(200 / 3) and score.bad2 == pytest.approx(200 / 3)
    assert score.bad3 == 0.0 and score.density == pytest.approx(200 / 3)
    with pytest.raises(IpassrError, match="no valid pixel"):
        score_disparity(estimate, np.full_like(gt, np.nan))
    with pytest.raises(IpassrError, match="ground truth is"):
        score_disparity(estimate, gt[:, :2])


def test_sgbm_recovers_a_known_shift():
    """A textured pair shifted by 7 pixels gives disparity 7 where SGBM can see both views."""
    import cv2
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (80, 160, 3), dtype=np.uint8), (3, 3), 0)
    left, right = texture[:, 20:140], texture[:, 27:147]            # left(x) = right(x - 7)
    estimate = sgbm_disparity(np.ascontiguousarray(left), np.ascontiguousarray(right), 16)
    inner = estimate[10:-10, 30:-10]
    assert np.nanmedian(inner) == pytest.approx(7.0, abs=0.25)
    assert num_disparities(120, np.full((2, 2), 7.0, np.float32)) == 16
    assert num_disparities(741) == 192


def test_table5_on_motorcycle(tmp_path, capsys):
    """`ipassr evaluate --disparity` (no dataset root) scores HR and bicubic on scikit-image's Motorcycle."""
    out = tmp_path / "d.json"
    assert main(["evaluate", "--disparity", "--scale", "4", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Disparity (StereoSGBM) on Motorcycle, x4" in printed and ">3px(%)" in printed
    rows = json.loads(out.read_text())["disparity"]["datasets"]["Motorcycle"]
    assert list(rows) == ["Bicubic", "HR"]
    assert rows["HR"]["epe"] < rows["Bicubic"]["epe"] and rows["HR"]["bad1"] < rows["Bicubic"]["bad1"]
    assert rows["HR"]["epe_vs_hr"] == 0.0 and rows["Bicubic"]["epe_vs_hr"] > 0
    assert set(rows["HR"]["scenes"]) == {"motorcycle"}
