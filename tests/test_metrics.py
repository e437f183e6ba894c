"""PSNR/SSIM as the paper's protocol, checked against scikit-image and by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import skimage.metrics as skimage_metrics

from ipassr.errors import IpassrError
from ipassr.data.io import read_image
from ipassr.evaluation.metrics import psnr, score_pair, ssim
from ipassr.data.resize import imresize


@pytest.fixture(scope="module")
def real_pair(cones_pair):
    """A real HR crop and its MATLAB-bicubic x2 reconstruction (SR-like degradation)."""
    hr = read_image(cones_pair[0])[100:196, 120:260]
    return hr, imresize(imresize(hr, 0.5), 2)


def test_psnr_by_hand():
    a = np.full((8, 9, 3), 100, np.uint8)
    b = a.copy()
    b[..., 0] += 3                                 # MSE = 9 / 3 = 3 over all values
    assert psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / 3.0))
    assert psnr(a, a) == float("inf")


def test_psnr_matches_skimage(real_pair):
    hr, sr = real_pair
    assert psnr(sr, hr) == pytest.approx(skimage_metrics.peak_signal_noise_ratio(hr, sr, data_range=255), abs=1e-10)


def _skimage_ssim(a, b):
    return skimage_metrics.structural_similarity(a, b, channel_axis=2, data_range=255, gaussian_weights=True,
                                                 sigma=1.5, use_sample_covariance=False)


def test_ssim_matches_skimage_gaussian_on_real_images(real_pair):
    hr, sr = real_pair
    value = ssim(sr, hr)
    assert 0.5 < value < 1.0
    assert value == pytest.approx(_skimage_ssim(hr, sr), abs=1e-10)


def test_ssim_matches_skimage_on_noise_and_grey():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, b) == pytest.approx(_skimage_ssim(a, b), abs=1e-10)
    grey = skimage_metrics.structural_similarity(a[..., 0], b[..., 0], data_range=255, gaussian_weights=True,
                                                 sigma=1.5, use_sample_covariance=False)
    assert ssim(a[..., 0], b[..., 0]) == pytest.approx(grey, abs=1e-10)
    assert ssim(a, a) == pytest.approx(1.0)


def test_ssim_is_not_the_uniform_window_definition(real_pair):
    """Guard against silently switching to skimage's default 7x7 uniform window."""
    hr, sr = real_pair
    uniform = skimage_metrics.structural_similarity(hr, sr, channel_axis=2, data_range=255)
    assert abs(ssim(sr, hr) - uniform) > 1e-4


def test_left_score_crops_64_columns_and_stereo_is_uncropped(real_pair):
    hr, sr = real_pair
    spoiled = hr.copy()
    spoiled[:, :64] = 255 - spoiled[:, :64]        # damage only the columns the 'Left' score ignores
    score = score_pair(spoiled, sr, hr, hr)
    assert score.left_psnr == float("inf") and score.left_ssim == pytest.approx(1.0)
    assert score.stereo_psnr == pytest.approx((psnr(spoiled, hr) + psnr(sr, hr)) / 2)
    assert score.stereo_ssim == pytest.approx((ssim(spoiled, hr) + ssim(sr, hr)) / 2)
    plain = score_pair(sr, sr, hr, hr)
    assert plain.left_psnr == pytest.approx(psnr(sr[:, 64:], hr[:, 64:]))
    assert set(plain.to_dict()) == {"left_psnr", "left_ssim", "stereo_psnr", "stereo_ssim"}


def test_bad_inputs():
    small = np.zeros((20, 70, 3), np.uint8)
    with pytest.raises(IpassrError, match="too small for the 64-column crop"):
        score_pair(small, small, small, small, "Tiny/scene")
    a = np.zeros((20, 100, 3), np.uint8)
    with pytest.raises(IpassrError, match="Tiny/scene: SR right view is 99x20 but HR is 100x20"):
        score_pair(a, a[:, :99], a, a, "Tiny/scene")
    with pytest.raises(TypeError, match="uint8"):
        psnr(a.astype(np.float32), a.astype(np.float32))
    with pytest.raises(IpassrError, match="smaller than the 11x11 window"):
        ssim(a[:5], a[:5])


def test_the_left_crop_needs_one_window_of_columns_past_it():
    """74 columns leave the cropped 'Left' view 10, under SSIM's 11-column window: refused by
    name and width; 75 leave exactly one window and are scored."""
    narrow, fits = np.zeros((20, 74, 3), np.uint8), np.full((20, 75, 3), 7, np.uint8)
    with pytest.raises(IpassrError, match=r"^pair: image is 74 pixels wide, too small for the "
                                          r"64-column crop"):
        score_pair(narrow, narrow, narrow, narrow)
    assert score_pair(fits, fits, fits, fits).left_ssim == pytest.approx(1.0)
    wide = np.zeros((20, 100, 3), np.uint8)
    with pytest.raises(IpassrError, match=r"^pair: SR left view is 99x20 but HR is 100x20$"):
        score_pair(wide[:, :99], wide, wide, wide)
    with pytest.raises(IpassrError, match=r"^ssim: image shapes differ"):
        ssim(fits, fits[:, :74])


def test_psnr_one_level_apart_is_finite_and_equal_images_warn_nothing():
    """MSE exactly 1 is 48.13 dB, not inf; equal images give inf without a division warning."""
    a = np.full((6, 7, 3), 100, np.uint8)
    assert psnr(a, a + 1) == pytest.approx(10 * np.log10(255 ** 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert psnr(a, a) == float("inf")


def test_every_mixed_dtype_pair_is_refused_and_errors_name_the_metric():
    a = np.zeros((12, 13, 3), np.uint8)
    for first, second in ((a, a.astype(np.float32)), (a.astype(np.int16), a)):
        for metric in (psnr, ssim):
            with pytest.raises(TypeError, match="uint8"):
                metric(first, second)
    for metric, name in ((psnr, "psnr"), (ssim, "ssim")):
        with pytest.raises(IpassrError, match=rf"^{name}: image shapes differ"):
            metric(a, a[:, :12])


def test_ssim_takes_exactly_one_window_and_refuses_one_row_or_column_less():
    """11x11 is the smallest image SSIM scores; 10 rows or 10 columns are refused with W x H."""
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (11, 11, 3), dtype=np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    wide, tall = np.zeros((10, 30, 3), np.uint8), np.zeros((30, 10, 3), np.uint8)
    with pytest.raises(IpassrError, match=r"^ssim: image 30x10 is smaller than the 11x11 window$"):
        ssim(wide, wide)
    with pytest.raises(IpassrError, match=r"^ssim: image 10x30 is smaller than the 11x11 window$"):
        ssim(tall, tall)
