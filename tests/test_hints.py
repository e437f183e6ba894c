"""Disparity hints (not in the paper): SGBM on real and shifted pairs, their patch tensor, the
augmentations that carry them, the hint loss, and training with them."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from ipassr.models.bipam import AttentionMaps
from ipassr.cli import main
from ipassr.errors import IpassrError
from ipassr.evaluation.correspondence import lr_disparity
from ipassr.data.hints import confident_lr_disparity, pair_hints, sgbm_disparities
from ipassr.data.io import read_image, write_image
from ipassr.models.losses import LossConfig, hint_loss, ipassr_loss
from ipassr.data.patches import PatchFile, extract_patches
from ipassr.train import TrainConfig, Trainer
from ipassr.train.data import ArrayPatches, PatchDataset

from training_helpers import TINY, CONES, one_thread, write_patch_file  # noqa: F401


@pytest.fixture(scope="module")
def cones():
    return read_image(CONES / "im2.png"), read_image(CONES / "im6.png")


def _shifted_pair(image: np.ndarray, disparity: int) -> tuple[np.ndarray, np.ndarray]:
    """A pair whose every left pixel x shows what the right view shows at x - disparity."""
    return image[:, :-disparity], image[:, disparity:]


def test_sgbm_finds_a_known_shift_in_both_views(cones):
    left, right = _shifted_pair(cones[0], 12)
    disparity_left, disparity_right = sgbm_disparities(left, right)
    for disparity in (disparity_left, disparity_right):
        known = np.isfinite(disparity)
        assert known.mean() > 0.6
        assert np.mean(np.abs(disparity[known] - 12) <= 0.5) > 0.95


def test_hints_on_motorcycle_cover_and_match_its_ground_truth():
    """Measured: 92.3% of Motorcycle's ground-truth pixels get an x2 hint, 94.5% of them within 1 LR
    px (without the left padding SGBM skips the first 256 columns: 62% coverage)."""
    from skimage.data import stereo_motorcycle

    left, right, truth = stereo_motorcycle()
    hints = pair_hints(left[:, :740], right[:, :740], 2)
    truth = np.where(np.isfinite(truth) & (truth > 0), truth, np.nan)[:, :740]
    truth = lr_disparity(truth.astype(np.float32), 2)
    both = np.isfinite(hints[0]) & np.isfinite(truth)
    assert both.sum() / np.isfinite(truth).sum() > 0.88
    assert np.mean(np.abs(hints[0] - truth)[both] <= 1) > 0.92


def test_confident_lr_disparity_takes_block_medians_of_consistent_blocks():
    hr = np.full((4, 6), 8.0, np.float32)
    hr[0, 2] = np.nan                       # block (0, 1): 3 of 4 known, median 8
    hr[0:2, 4:6] = [[8.0, 8.0], [np.nan, np.nan]]   # block (0, 2): half known, kept
    hr[2:4, 0:2] = [[8.0, 13.0], [8.0, 8.0]]        # block (1, 0): spans 5 HR px > 2: unknown
    hr[2:4, 2:4] = [[np.nan, np.nan], [np.nan, 8.0]]  # block (1, 1): 1 of 4 known: unknown
    lr = confident_lr_disparity(hr, 2)
    np.testing.assert_array_equal(np.isfinite(lr), [[True, True, True], [False, False, True]])
    np.testing.assert_allclose(lr[np.isfinite(lr)], 4.0)


def test_hints_of_a_shifted_pair_are_its_lr_disparity(cones):
    left, right = _shifted_pair(cones[0], 16)
    hints = pair_hints(left[:, :432], right[:, :432], 4)     # (2, H/4, W/4)
    assert hints.shape == (2, left.shape[0] // 4, 108)
    known = np.isfinite(hints)
    assert known.mean() > 0.5
    assert np.mean(np.abs(hints[known] - 4) <= 0.25) > 0.95


def _peaked_maps(width: int, disparity: float, peak: float = 0.9, rows: int = 1) -> AttentionMaps:
    """Maps (1, rows, W, W) that put ``peak`` on the column ``disparity`` away, the rest spread evenly."""
    columns = torch.arange(width)
    maps = []
    for sign in (-1, 1):
        m = torch.full((1, rows, width, width), (1 - peak) / (width - 1))
        target = (columns + sign * disparity).clamp(0, width - 1)
        m[0, :, columns, target] = peak
        maps.append(m)
    valid = torch.ones(1, 1, rows, width)
    return AttentionMaps(maps[0], maps[1], valid, valid)


def test_hint_loss_is_lowest_at_the_hinted_column_and_ignores_unknown_hints():
    width = 20
    hints = torch.full((1, 2, 1, width), 3.0)
    right = hint_loss(_peaked_maps(width, 3), hints)
    wrong = hint_loss(_peaked_maps(width, 5), hints)
    # Every counted row (left x >= 3; right x <= 16) pays -log(0.9) per view.
    assert float(right) == pytest.approx(-2 * np.log(0.9), rel=1e-5)
    assert float(wrong) > 5 * float(right)
    halfway = torch.full((1, 2, 1, width), 3.5)     # split between columns 3 and 4 away
    expected = -(0.5 * np.log(0.9) + 0.5 * np.log(0.1 / 19)) * 2
    assert float(hint_loss(_peaked_maps(width, 3), halfway)) == pytest.approx(expected, rel=1e-5)
    unknown = torch.full((1, 2, 1, width), float("nan"))
    assert float(hint_loss(_peaked_maps(width, 5), unknown)) == 0.0


@pytest.mark.parametrize("view", [0, 1])
def test_an_uneven_fractional_hint_splits_its_target_on_each_view(view):
    """Hint 3.25 with the peak 3 columns away: 3/4 of the target on the peak, 1/4 on the next
    column, each view alone (the other's hints unknown). A 50/50 split, the floor column alone
    or the wrong neighbour each give another value."""
    width = 20
    hints = torch.full((1, 2, 1, width), float("nan"))
    hints[:, view] = 3.25
    expected = -(0.75 * np.log(0.9) + 0.25 * np.log(0.1 / 19))
    assert float(hint_loss(_peaked_maps(width, 3), hints)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("view, column", [(0, 3), (1, 16)])
def test_hint_loss_counts_a_lone_hint_on_the_first_or_last_column(view, column):
    """Left x = 3 with hint 3 points at column 0, right x = 16 at column 19 = W - 1: both inside
    the patch, so each counts, alone (a mean over one row), and pays -log(0.9)."""
    width = 20
    hints = torch.full((1, 2, 1, width), float("nan"))
    hints[0, view, 0, column] = 3.0
    assert float(hint_loss(_peaked_maps(width, 3), hints)) == pytest.approx(-np.log(0.9), rel=1e-5)


def test_ipassr_loss_adds_the_weighted_hint_term_only_when_asked():
    torch.manual_seed(0)
    lr = [torch.rand(1, 3, 2, 20) for _ in range(2)]
    hr = [torch.rand(1, 3, 4, 40) for _ in range(2)]
    maps = _peaked_maps(20, 3, rows=2)
    hints = torch.full((1, 2, 2, 20), 3.0)
    plain = ipassr_loss(hr[0], hr[1], hr[0], hr[1], lr[0], lr[1], maps, 2, LossConfig())
    hinted = ipassr_loss(hr[0], hr[1], hr[0], hr[1], lr[0], lr[1], maps, 2,
                         LossConfig(hint_weight=0.5), hints=hints)
    assert "hint" not in plain
    assert float(hinted["total"]) == pytest.approx(float(plain["total"]) + 0.5 * float(hinted["hint"]))
    with pytest.raises(ValueError, match=r"^hint_weight > 0 needs the batch's disparity hints$"):
        ipassr_loss(hr[0], hr[1], hr[0], hr[1], lr[0], lr[1], maps, 2, LossConfig(hint_weight=0.5))


@pytest.fixture(scope="module")
def hinted_patches(tmp_path_factory, cones):
    """A patch file with hints, made by the CLI from the real Cones pair at x2 (56 patches)."""
    root = tmp_path_factory.mktemp("hinted")
    write_image(root / "src" / "one_L.png", cones[0])
    write_image(root / "src" / "one_R.png", cones[1])
    out = root / "p.safetensors"
    assert main(["prepare", "patches", str(root / "src"), "--scale", "2", "--hints",
                 "--output", str(out)]) == 0
    return out


def test_prepare_patches_hints_are_stored_beside_the_patches(hinted_patches, cones):
    patches = PatchFile(hinted_patches)
    assert patches.has_hints and len(patches) == 56
    *arrays, hints = extract_patches(*cones, 2, hints=True)
    for got, want in zip(patches[3], arrays):
        np.testing.assert_array_equal(got, want[3])
    np.testing.assert_array_equal(patches.hints(3), hints[3].astype(np.float32))
    assert hints.shape == (56, 2, 30, 90) and hints.dtype == np.float16
    assert 0.3 < np.isfinite(hints).mean() < 1
    from safetensors import safe_open
    with safe_open(str(hinted_patches), framework="np") as handle:
        assert handle.metadata()["hints"] == "sgbm"
        assert handle.get_tensor("hints").shape == (56, 2, 30, 90)


def test_a_file_without_hints_says_how_to_make_them(tmp_path, cones, capsys):
    path = write_patch_file(tmp_path / "plain.safetensors", extract_patches(*cones, 2), 2, count=8)
    patches = PatchFile(path)
    assert not patches.has_hints
    with pytest.raises(IpassrError, match=r"plain\.safetensors: holds no disparity hints.*--hints"):
        patches.hints(0)
    config = TrainConfig(patches=str(path), hint_weight=0.01, **TINY)
    with pytest.raises(IpassrError, match=r"plain\.safetensors: holds no disparity hints"):
        Trainer(config, tmp_path / "run", progress=False)
    # The command line says it in one line, before any run folder is written.
    assert main(["train", "--patches", str(path), "--out", str(tmp_path / "cli"), "--hint-weight", "0.01",
                 "--workers", "0", "--batch-size", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "plain.safetensors" in err and "--hints" in err
    assert not (tmp_path / "cli").exists()


def test_hints_without_opencv_say_how_to_install_it(tmp_path, cones, capsys, monkeypatch):
    write_image(tmp_path / "src" / "one_L.png", cones[0])
    write_image(tmp_path / "src" / "one_R.png", cones[1])
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    out = tmp_path / "p.safetensors"
    assert main(["prepare", "patches", str(tmp_path / "src"), "--scale", "2", "--hints",
                 "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--hints needs OpenCV" in err and "ipassr[stereo]" in err
    assert not out.exists()


def test_flips_and_crops_carry_the_hints_with_the_views(hinted_patches):
    patches = PatchFile(hinted_patches)
    dataset = PatchDataset(patches, crop=(20, 60), hints=True)
    hints = patches.hints(5)
    plain = dataset[(5, False, False, 4, 10)][4].numpy()
    np.testing.assert_array_equal(plain, hints[:, 4:24, 10:70])
    mirrored = dataset[(5, True, False, 4, 10)][4].numpy()
    # The mirrored right view becomes the left view: its hints, mirrored, are the new left's.
    np.testing.assert_array_equal(mirrored[0], plain[1][:, ::-1])
    np.testing.assert_array_equal(mirrored[1], plain[0][:, ::-1])
    upside_down = dataset[(5, False, True, 4, 10)][4].numpy()
    np.testing.assert_array_equal(upside_down, plain[:, ::-1])
    assert len(PatchDataset(patches)[(5, False, False, 0, 0)]) == 4   # without hints: the four views


def test_mirrored_hints_still_name_the_match(hinted_patches):
    """After the flip-and-swap, left pixel x still finds its match at right x - d (LR pixels)."""
    patches = PatchFile(hinted_patches)
    dataset = PatchDataset(patches, hints=True)
    lr_left, lr_right, _, _, hints = (t.numpy().astype(np.float32) for t in dataset[(9, True, False, 0, 0)])
    rows, cols = np.nonzero(np.isfinite(hints[0]))
    targets = np.round(cols - hints[0][rows, cols]).astype(int)
    inside = (targets >= 0)
    errors = np.abs(lr_left[rows[inside], cols[inside]] - lr_right[rows[inside], targets[inside]]).mean()
    shuffled = np.abs(lr_left[rows[inside], cols[inside]] - lr_right[rows[inside], cols[inside]]).mean()
    assert errors < 0.5 * shuffled


def test_training_with_hints_logs_the_term_and_refuses_what_cannot_use_them(tmp_path, hinted_patches):
    config = TrainConfig(patches=str(hinted_patches), hint_weight=0.01, **TINY)
    Trainer(config, tmp_path / "run", progress=False).fit(max_steps=1)
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [entry for entry in logged if entry["event"] == "step"]
    assert steps and steps[0]["loss"]["hint"] > 0
    for bad, message in (({"use_attention": False}, "single-view"), ({"replicate_left": True}, "replicate-left"),
                         ({"hint_weight": -1.0}, "must be 0")):
        with pytest.raises(IpassrError, match=message):
            Trainer(TrainConfig(patches=str(hinted_patches), **{**TINY, "hint_weight": 0.01, **bad}),
                    tmp_path / "bad", progress=False)


def test_array_patches_have_no_hints(cones):
    source = ArrayPatches(*extract_patches(*cones, 2), scale=2)
    with pytest.raises(IpassrError, match="holds no disparity hints"):
        Trainer(TrainConfig(hint_weight=0.01, **TINY), "unused", source=source, progress=False)
