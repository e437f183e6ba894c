"""MATLAB-exact bicubic resize: pixel equality with real MATLAB outputs, and the float tensor path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ipassr.errors import IpassrError
from ipassr.data.io import read_image
from ipassr.data.resize import (_weight_matrix, degrade, imresize, imresize_tensor, mod_crop,
                                 resize_weights)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("name", ["0001_L", "0001_R"])
def test_degrade_matches_matlab_every_pixel(data_dir, scale, name):
    """degrade(HR, s) (mod-crop, then imresize by 1/s) equals MATLAB's imresize(..., 'bicubic')
    of the mod-cropped HR exactly; the HR gets s-1 extra white rows and 1 column to crop."""
    hr = read_image(data_dir / "flickr1024" / "Train" / f"{name}.png")   # 1096x744: multiple of 4
    reference = read_image(data_dir / "matlab-bicubic" / f"X{scale}" / f"{name}.png")
    margin = np.pad(hr, ((0, scale - 1), (0, 1), (0, 0)), constant_values=255)
    assert mod_crop(margin, scale).shape == hr.shape
    lr = degrade(margin, scale)
    assert lr.dtype == np.uint8 and lr.shape == reference.shape
    np.testing.assert_array_equal(lr, reference)


def test_upsampling_weights_are_keys_cubic():
    """x2 upsampling taps are the Keys cubic (a=-0.5) values at distances 1.75, 0.75, 0.25, 1.25."""
    weights, indices = resize_weights(8, 16, 2.0)
    # Output pixel 5 (1-based) samples u = 2.75: inputs 1..4 (1-based) -> 0..3 (0-based).
    row = {int(i): w for i, w in zip(indices[4], weights[4]) if w != 0}
    assert row == pytest.approx({0: -0.0234375, 1: 0.2265625, 2: 0.8671875, 3: -0.0703125})
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def _reference_pass(image: np.ndarray, scale: float, axis: int) -> np.ndarray:
    """Independent, slow reference of one MATLAB pass: symmetric pad with np.pad, direct kernel sums."""
    n = image.shape[axis]
    out = math.ceil(n * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    pad = int(math.ceil(width)) + 4
    padded = np.pad(image.astype(np.float64), [(pad, pad) if a == axis else (0, 0) for a in range(image.ndim)],
                    mode="symmetric")

    def kernel(x):
        x = abs(x)
        if x <= 1:
            return 1.5 * x ** 3 - 2.5 * x ** 2 + 1
        if x <= 2:
            return -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2
        return 0.0

    rows = []
    for x in range(1, out + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        taps = range(int(math.floor(u - width / 2)), int(math.floor(u - width / 2)) + int(math.ceil(width)) + 2)
        if scale < 1:
            w = np.array([scale * kernel(scale * (u - j)) for j in taps])
        else:
            w = np.array([kernel(u - j) for j in taps])
        w /= w.sum()
        values = np.stack([np.take(padded, j - 1 + pad, axis=axis) for j in taps])
        rows.append(np.tensordot(w, values, axes=1))
    result = np.stack(rows, axis=axis)
    return np.clip(np.floor(result + 0.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("scale", [0.37, 0.5, 1 / 3, 1.6, 3.0])
def test_matches_independent_reference_at_odd_scales(scale):
    """Any positive scale, with the mirrored borders, equals a direct (slow) implementation."""
    image = np.random.default_rng(0).integers(0, 256, size=(13, 17, 3), dtype=np.uint8)
    expected = _reference_pass(_reference_pass(image, scale, 0), scale, 1)
    result = imresize(image, scale)
    assert result.shape == (math.ceil(13 * scale), math.ceil(17 * scale), 3)
    np.testing.assert_array_equal(result, expected)


def test_grey_2d_and_constant_image():
    """A 2-D image resizes too; a constant image stays constant (weights sum to 1)."""
    image = np.full((10, 12), 77, dtype=np.uint8)
    assert np.all(imresize(image, 0.5) == 77) and imresize(image, 0.5).shape == (5, 6)
    assert np.all(imresize(image, 2.5) == 77) and imresize(image, 2.5).shape == (25, 30)


def test_rounding_after_each_pass_is_matlab_like(cones_pair):
    """The uint8 path differs from the unrounded float path by at most one grey level."""
    image = read_image(cones_pair[0])[:60, :80]
    exact = imresize(image, 0.25).astype(np.float64)
    tensor = torch.from_numpy(image).permute(2, 0, 1).double()
    floating = imresize_tensor(tensor, 0.25).permute(1, 2, 0).numpy()
    assert np.max(np.abs(exact - floating)) <= 1.0


def test_tensor_path_matches_numpy_float_and_is_differentiable():
    """imresize_tensor equals the same weights applied in float64 and passes gradients."""
    rng = np.random.default_rng(1)
    image = rng.random((2, 3, 12, 20))
    tensor = torch.tensor(image, requires_grad=True)
    out = imresize_tensor(tensor, 0.5)
    assert out.shape == (2, 3, 6, 10)
    w_rows, i_rows = resize_weights(12, 6, 0.5)
    w_cols, i_cols = resize_weights(20, 10, 0.5)
    step = np.einsum("rk,bcrkw->bcrw", w_rows, image[:, :, i_rows, :])
    expected = np.einsum("ck,bhrck->bhrc", w_cols, step[:, :, :, i_cols])
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    out.sum().backward()
    assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
    assert imresize_tensor(torch.rand(1, 3, 5, 7), 4).shape == (1, 3, 20, 28)


def test_bad_arguments():
    """Non-positive scales and float images are refused with clear errors."""
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(IpassrError, match="positive"):
        imresize(image, 0)
    with pytest.raises(IpassrError, match="positive"):
        imresize(image, -2)
    with pytest.raises(TypeError, match="uint8"):
        imresize(image.astype(np.float32), 0.5)
    with pytest.raises(IpassrError, match="shape"):
        imresize(np.zeros((0, 4, 3), np.uint8), 0.5)
    assert imresize(np.zeros((1, 1, 3), np.uint8), 0.1).shape == (1, 1, 3)   # ceil, as MATLAB


def test_a_scale_that_is_no_number_or_empties_one_side_is_refused_by_name():
    """'two' is no number; 1e-10 makes 1 row into 0 rows while 20 columns still give 1."""
    image = np.zeros((1, 20, 3), np.uint8)
    with pytest.raises(IpassrError, match=r"^resize scale must be a number, got 'two'$"):
        imresize(image, "two")
    with pytest.raises(IpassrError, match=r"^resizing a 20x1 image by 1e-10 gives an empty image$"):
        imresize(image, 1e-10)


def test_tensor_path_takes_a_plain_hw_tensor_and_refuses_integers_and_1d():
    grey = torch.rand(5, 7, dtype=torch.float64)
    out = imresize_tensor(grey, 2)
    assert out.shape == (10, 14)
    torch.testing.assert_close(out, imresize_tensor(grey[None, None], 2)[0, 0], rtol=0, atol=1e-15)
    for bad in (torch.zeros(5, 7, dtype=torch.uint8), torch.rand(7)):
        with pytest.raises(TypeError, match=r"^imresize_tensor expects a floating-point tensor of "
                                            r"shape \(\.\.\., H, W\)$"):
            imresize_tensor(bad, 2)


def test_weight_matrices_are_made_on_the_tensors_device_and_dtype():
    """The meta device stands in for a GPU: a CPU matrix would break CUDA training."""
    matrix = _weight_matrix(8, 16, 2.0, torch.float32, torch.device("meta"))
    assert matrix.device.type == "meta" and matrix.dtype == torch.float32 and matrix.shape == (16, 8)
