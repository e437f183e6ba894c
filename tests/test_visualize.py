"""``ipassr visualize`` and ``ipassr.visualize``: what is drawn, from which numbers, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ipassr
from ipassr.cli import main
from ipassr.errors import IpassrError
from ipassr.inference.api import StereoSR
from ipassr.data.io import image_to_tensor, read_image, write_image
from ipassr.models.ipassr import IPASSR
from ipassr.data.resize import imresize
from ipassr.figures import MIN_WIDTH, enlarge
from ipassr.visualize import colormap, comparison, mask_heatmap, visualize_pair
from test_figures import find_rows


@pytest.fixture(scope="module")
def lr_pair(cones_pair):
    """A 20x36 crop of the real Cones pair."""
    return tuple(read_image(p)[150:170, 200:236] for p in cones_pair)


@pytest.fixture(scope="module")
def model(conformance_dir):
    return ipassr.load_model(conformance_dir / "x2.pth.tar")


def test_visualize_pair_draws_the_network_quantities(model, lr_pair):
    left, right = lr_pair
    result = visualize_pair(model, left, right, row=7)
    images = result.images
    assert {"valid_left", "valid_right", "disparity_left", "disparity_right",
            "attention_row7_right_to_left", "attention_row7_left_to_right",
            "row7_marked_left", "comparison_left"} == set(images)
    assert result.maps["valid_left"].shape == result.maps["disparity_right"].shape == (20, 36)
    assert all(im.dtype == np.uint8 and im.shape[1] >= MIN_WIDTH for im in images.values()
               if not im is images["comparison_left"])
    # each figure shows its map, enlarged and exact, under a title (test_figures.py)
    heat = enlarge(mask_heatmap(left, result.maps["valid_left"]))
    assert len(find_rows(images["valid_left"], heat)) == 1
    with torch.no_grad():
        *_, maps = model.network(image_to_tensor(left), image_to_tensor(right),
                                 return_attention=True)
    # the fast path's convolutions round differently (channels_last), and unscaled attention
    # scores amplify that: equal to ~1e-4 here (exactness on equal inputs: test_chunked.py)
    details = result.details
    torch.testing.assert_close(details.valid_left, maps.valid_left, rtol=0, atol=1e-3)
    torch.testing.assert_close(details.rows[7][0], maps.right_to_left[:, 7], rtol=0, atol=1e-3)
    torch.testing.assert_close(details.rows[7][1], maps.left_to_right[:, 7], rtol=0, atol=1e-3)
    # the comparison's first panel is the MATLAB-exact bicubic upscale (left of the crop box)
    bicubic = imresize(left, 2)
    columns = images["comparison_left"][:, :5]
    assert any(np.array_equal(columns[top:top + 40], bicubic[:, :5])
               for top in range(columns.shape[0] - 40))


def test_colormap_spans_the_range():
    image = colormap(np.array([[0.0, 0.5, 1.0]]))
    assert image.shape == (1, 3, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == (68, 1, 84) and tuple(image[0, 2]) == (253, 231, 37)


def test_comparison_places_panels_side_by_side_with_zoom():
    a = np.zeros((8, 10, 3), np.uint8)
    b = np.full((8, 10, 3), 200, np.uint8)
    image = comparison({"a": a, "b": b}, crop=(2, 2, 4, 4))
    assert image.shape[1] == 24
    assert (image[-10:, 14:] == 200).all() and (image[-10:, :10] == 0).all()  # zoomed crops


def test_cli_writes_pngs_and_checks_input(tmp_path, conformance_dir, lr_pair, capsys):
    left, right = tmp_path / "l.png", tmp_path / "r.png"
    write_image(left, lr_pair[0])
    write_image(right, lr_pair[1])
    hr = tmp_path / "hr.png"
    write_image(hr, imresize(lr_pair[0], 2))
    weights = str(conformance_dir / "x2.pth.tar")
    common = ["visualize", "--weights", weights, "--left", str(left), "--right", str(right)]
    assert main(common + ["--hr-left", str(hr), "--crop", "4,4,16,8",
                          "--output-dir", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "comparison_left.png" in written and "valid_left.png" in written
    assert Image.open(tmp_path / "out" / "comparison_left.png").size[0] == 3 * 72 + 2 * 4
    assert main(common + ["--row", "20", "--output-dir", str(tmp_path / "bad")]) == 2
    assert "row 20 is outside the image" in capsys.readouterr().err
    assert main(common + ["--crop", "60,0,20,20", "--output-dir", str(tmp_path / "bad")]) == 2
    assert "is not inside the 72x40 SR image" in capsys.readouterr().err
    assert main(common + ["--crop", "1,2", "--output-dir", str(tmp_path / "bad")]) == 2
    assert "expected X,Y,W,H" in capsys.readouterr().err


def test_refuses_non_finite_input_and_models_without_attention(model, lr_pair):
    left = lr_pair[0].astype(np.float32) / 255
    left[0, 0, 0] = np.nan
    with pytest.raises(IpassrError, match="NaN"):
        visualize_pair(model, left, lr_pair[1].astype(np.float32) / 255)
    single = StereoSR(IPASSR(2, use_attention=False))
    with pytest.raises(IpassrError, match="no parallax attention"):
        visualize_pair(single, *lr_pair)


def test_half_precision_model_and_running_out_of_memory(conformance_dir, lr_pair, request):
    """A bf16 model gets inputs of its own precision; the allocator failing mid-pass is an
    IpassrError with the pair's size and what to do, not a RuntimeError traceback."""
    half = ipassr.load_model(conformance_dir / "x2.pth.tar", dtype="bfloat16")
    assert visualize_pair(half, *lr_pair).maps["valid_left"].shape == (20, 36)

    request.getfixturevalue("forward_out_of_memory")
    with pytest.raises(IpassrError, match=r"out of CPU memory .* 36x20 pair .* lower --max-memory"):
        visualize_pair(half, *lr_pair)
