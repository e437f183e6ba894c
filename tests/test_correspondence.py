"""biPAM's correspondences scored against ground-truth disparity: occlusions, scores, the chunked
argmax, and `ipassr evaluate --attention` with its bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ipassr.inference.fast.attention import PER_PIXEL_DETAILS, RowAttention
from ipassr.cli import main
from ipassr.evaluation.correspondence import (lr_disparity, occlusion_from_disparity, right_disparity,
                                   score_correspondence)
from ipassr.data.disparity import write_pfm
from ipassr.data.io import write_image
from ipassr.models.ipassr import IPASSR
from ipassr.inference.fast import stereo_forward


def box_scene(height: int = 3, width: int = 30) -> np.ndarray:
    """Background at disparity 2 with a nearer box (disparity 6) over columns 10..19."""
    disparity = np.full((height, width), 2.0, dtype=np.float32)
    disparity[:, 10:20] = 6.0
    return disparity


def test_occlusions_follow_the_nearer_surface_and_the_border():
    visible = occlusion_from_disparity(box_scene())
    # background columns 0-1 fall off the right image; 6-9 land where the box (x - 6) lands
    hidden = [0, 1, 6, 7, 8, 9]
    assert visible[0].tolist() == [x not in hidden for x in range(30)]
    right, seen = right_disparity(box_scene())
    # right view: the box sits at 4..13; background right of it, 14..17, is hidden in the left
    # view (it would come from left columns 16..19, which the box covers); columns 28-29 have no
    # left pixel (x + 2 > 29)
    assert seen[0].tolist() == [x not in (14, 15, 16, 17, 28, 29) for x in range(30)]
    assert right[0, 4] == 6.0 and right[0, 3] == 2.0 and np.isnan(right[0, 14])


def test_lr_disparity_is_the_block_median_in_lr_pixels():
    disparity = np.array([[8, 8, 2, np.inf],
                          [8, 4, np.nan, np.nan]], dtype=np.float32)
    out = lr_disparity(disparity, 2)
    assert out.shape == (1, 2)
    assert out[0, 0] == 4.0  # median of 8, 8, 8, 4 = 8, over 2
    assert out[0, 1] == 1.0  # only the 2 is known
    assert np.isnan(lr_disparity(np.full((2, 2), np.nan), 2)[0, 0])


def fake_details(offset_left: np.ndarray, offset_right: np.ndarray, valid: float = 1.0
                 ) -> RowAttention:
    """Per-pixel details of one pair whose most attended columns are the given offsets."""
    planes = [torch.full((1, 1, *offset_left.shape), valid), torch.full((1, 1, *offset_left.shape), valid),
              torch.zeros(1, 1, *offset_left.shape), torch.zeros(1, 1, *offset_left.shape),
              torch.from_numpy(offset_left)[None, None], torch.from_numpy(offset_right)[None, None],
              torch.full((1, 1, *offset_left.shape), 0.5), torch.full((1, 1, *offset_left.shape), 0.5)]
    assert len(planes) == PER_PIXEL_DETAILS
    return RowAttention(*planes, {})


def test_scores_count_only_visible_pixels():
    gt = box_scene()
    right, _ = right_disparity(gt)
    perfect = score_correspondence(fake_details(-gt, np.nan_to_num(right)), gt)
    assert perfect["left"].within_1px == 1.0 and perfect["left"].epe == 0.0
    assert perfect["right"].within_1px == 1.0
    assert perfect["left"].visible == 3 * 24 and perfect["left"].occluded == 3 * 6
    assert perfect["left"].peak == 0.5 and perfect["left"].valid_occluded == 1.0
    # off by 1.5 on the box: within 2 px but not within 1 px there
    off = -gt.copy()
    off[:, 10:20] -= 1.5
    scores = score_correspondence(fake_details(off, np.nan_to_num(right)), gt)["left"]
    assert scores.within_1px == pytest.approx(14 / 24) and scores.within_2px == 1.0
    assert scores.epe == pytest.approx(1.5 * 10 / 24)


def test_chunked_argmax_equals_the_full_maps_untiled_and_banded():
    torch.manual_seed(0)
    network = IPASSR(scale=2).eval()
    left, right = torch.rand(1, 3, 12, 40), torch.rand(1, 3, 12, 40)
    with torch.no_grad():
        _, _, maps = network(left, right, return_attention=True)
    columns = torch.arange(40, dtype=torch.float32)
    expected_left = maps.right_to_left.argmax(-1).float() - columns
    expected_right = maps.left_to_right.argmax(-1).float() - columns
    for max_memory in (None, 3 * 2 ** 20):  # the default plan, and one that cuts the pair in bands
        _, _, details = stereo_forward(network, left, right, max_memory=max_memory,
                                       return_details=True)
        torch.testing.assert_close(details.peak_offset_left[:, 0], expected_left, rtol=0, atol=0)
        torch.testing.assert_close(details.peak_offset_right[:, 0], expected_right, rtol=0, atol=0)
        torch.testing.assert_close(details.peak_left[:, 0], maps.right_to_left.amax(-1),
                                   rtol=1e-5, atol=1e-6)


def tiny_testset(root, disparity_shape=(40, 88), with_gt=True):
    """ROOT/Tiny/hr, lr_x2 of one textured 88x40 pair shifted by 3 px, with a disp0.pfm."""
    texture = np.random.default_rng(0).integers(0, 256, (40, 100, 3), dtype=np.uint8)
    scene = root / "Tiny" / "hr" / "s0"
    write_image(scene / "hr0.png", texture[:, 3:91])
    write_image(scene / "hr1.png", texture[:, 6:94])
    for name, view in (("lr0", texture[::2, 3:91:2]), ("lr1", texture[::2, 6:94:2])):
        write_image(root / "Tiny" / "lr_x2" / "s0" / f"{name}.png", view)
    if with_gt:
        write_pfm(scene / "disp0.pfm", np.full(disparity_shape, 3.0, dtype=np.float32))
    return root


def test_attention_on_a_test_set_with_ground_truth(tmp_path, capsys):
    root = tiny_testset(tmp_path)
    assert main(["evaluate", "--dataset-root", str(root), "--scale", "2", "--attention",
                 "--weights", "net=x2", "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())["attention"]["datasets"]["Tiny"]["net"]
    assert result["scenes"]["s0"]["left"]["visible"] > 0 and "within_1px" in result["mean"]


def test_attention_bad_input_is_one_line(tmp_path, capsys):
    no_gt = tiny_testset(tmp_path / "a", with_gt=False)
    assert main(["evaluate", "--dataset-root", str(no_gt), "--scale", "2", "--attention",
                 "--weights", "x2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no scene" in err and "ground-truth disparity" in err
    wrong = tiny_testset(tmp_path / "b", disparity_shape=(40, 80))
    assert main(["evaluate", "--dataset-root", str(wrong), "--scale", "2", "--attention",
                 "--weights", "x2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "disp0.pfm" in err and "hr0.png" in err and "80x40" in err and "88x40" in err
    assert main(["evaluate", "--scale", "2", "--attention", "--bicubic"]) == 2
    assert "give --weights" in capsys.readouterr().err
