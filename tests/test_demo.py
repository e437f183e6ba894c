"""``ipassr demo`` on the built-in Motorcycle pair and on a user's own pair."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from ipassr.cli import main
from ipassr.data.io import read_image, write_image


def run_demo_on_crop(tmp_path, cones_pair, rows: int, cols: int, weights, name: str):
    """Write the top-left rows x cols of the Cones pair as l.png / r.png, run ``ipassr demo`` on
    it at x2 into tmp_path/name; return (exit code, output folder)."""
    for source, view in zip(cones_pair, ("l.png", "r.png")):
        write_image(tmp_path / view, read_image(source)[:rows, :cols])
    out = tmp_path / name
    code = main(["demo", "--scale", "2", "--weights", str(weights), "--left",
                 str(tmp_path / "l.png"), "--right", str(tmp_path / "r.png"),
                 "--output-dir", str(out)])
    return code, out


@pytest.fixture(scope="module")
def shipped_demo(tmp_path_factory) -> Callable[[int], tuple[int, Path, str]]:
    """``ipassr demo --scale S`` as the README runs it (Motorcycle, the shipped weights), run once
    per scale for the tests that read it: S -> (exit code, output folder, what it printed)."""
    runs: dict[int, tuple[int, Path, str]] = {}

    def run(scale: int) -> tuple[int, Path, str]:
        if scale not in runs:
            out = tmp_path_factory.mktemp(f"demo_x{scale}") / "demo"
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                code = main(["demo", "--scale", str(scale), "--output-dir", str(out)])
            runs[scale] = code, out, printed.getvalue()
        return runs[scale]

    return run


@pytest.mark.parametrize("scale,margin,within_1px", [(2, 2.6, 0.87), (4, 1.4, 0.89)])
def test_demo_with_shipped_weights_beats_bicubic_by_the_promised_margin(shipped_demo, scale,
                                                                         margin, within_1px):
    """The README's first command: Motorcycle, never trained on, (Left+Right)/2 PSNR (measured
    +2.89 / +1.55 dB at x2 / x4). biPAM finds the matches (88.5% / 90.5% of the visible pixels
    within 1 LR pixel; the first weights shipped found 12% / 72%) and its valid masks tell
    occlusions apart (visible 0.94 / 0.96 against occluded 0.46 / 0.52): both held to issue
    13's 85% with points to spare, as weights scaled by 1 + 1e-5 noise (far more than float
    rounding between CPUs) left both numbers unchanged (88.53% / 90.52%)."""
    code, out, printed = shipped_demo(scale)
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    scores, matches = report["scores"], report["correspondence"]
    assert scores["iPASSR"]["stereo_psnr"] > scores["bicubic"]["stereo_psnr"] + margin
    assert matches["within_1px"] >= within_1px
    assert matches["valid_visible"] > matches["valid_occluded"] + 0.3
    line = f"biPAM matches {100 * matches['within_1px']:.1f}% of the pixels visible in both views"
    assert line in printed and line in (out / "report.md").read_text()


def test_demo_on_motorcycle_writes_everything(shipped_demo):
    """The README's first command (the x4 run scored above)."""
    code, out, printed = shipped_demo(4)
    assert code == 0
    assert "bicubic" in printed and str(out) in printed
    report = json.loads((out / "report.json").read_text())
    assert report["scale"] == 4 and set(report["scores"]) == {"bicubic", "iPASSR"}
    bicubic = report["scores"]["bicubic"]
    assert 20 < bicubic["stereo_psnr"] < 35 and 0 < bicubic["stereo_ssim"] < 1
    lr = read_image(out / "lr_left.png")
    sr = read_image(out / "sr_left.png")
    assert sr.shape == (lr.shape[0] * 4, lr.shape[1] * 4, 3)
    assert (out / "comparison.png").stat().st_size > 0 and (out / "valid_masks.png").is_file()
    assert "(Left+Right)/2" in (out / "report.md").read_text()
    assert not list(out.glob("*.tmp"))


def test_demo_runs_the_network_once_for_the_sr_pair_and_the_masks(tmp_path, conformance_dir,
                                                                   cones_pair, monkeypatch):
    from ipassr.inference.api import StereoSR

    calls = []
    real = StereoSR.fast_forward

    def counted(*args, **kwargs):
        calls.append(kwargs.get("return_details", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(StereoSR, "fast_forward", staticmethod(counted))
    code, out = run_demo_on_crop(tmp_path, cones_pair, 24, 40, conformance_dir / "x2.pth.tar",
                                 "once")
    assert code == 0
    assert calls == [True]
    assert read_image(out / "sr_left.png").shape == (48, 80, 3)
    assert (out / "valid_masks.png").is_file()


def test_demo_on_own_pair_has_no_scores(tmp_path, conformance_dir, cones_pair):
    code, out = run_demo_on_crop(tmp_path, cones_pair, 48, 96, conformance_dir / "x2.pth.tar",
                                 "mine")
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["scores"] == {}
    assert read_image(out / "sr_right.png").shape == (96, 192, 3)
    assert np.array_equal(read_image(out / "lr_left.png"), read_image(tmp_path / "l.png"))


def test_demo_needs_both_views(tmp_path, conformance_dir, capsys):
    code = main(["demo", "--weights", str(conformance_dir / "x4.pth.tar"), "--left", "x.png"])
    assert code == 2 and "both --left and --right" in capsys.readouterr().err


def test_demo_with_single_view_weights_skips_the_masks(tmp_path, cones_pair):
    from ipassr.models.checkpoint import save_weights
    from ipassr.models.ipassr import IPASSR

    save_weights(IPASSR(2, use_attention=False), tmp_path / "single.safetensors")
    code, out = run_demo_on_crop(tmp_path, cones_pair, 32, 80,
                                 tmp_path / "single.safetensors", "single")
    assert code == 0
    assert (out / "comparison.png").is_file() and not (out / "valid_masks.png").exists()
