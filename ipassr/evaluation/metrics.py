"""PSNR and SSIM exactly as the paper's evaluation protocol (paper Sec. 4.1; docs/evaluation.md).

* Images are 8-bit RGB (SR outputs already clamped and quantised, as when saved to PNG).
* PSNR on RGB, peak 255 (equivalently 1.0 on [0, 1] images): 10 log10(255^2 / MSE over all values).
* SSIM on RGB: mean over the three channels of the mean SSIM map; Gaussian window 11x11, sigma 1.5,
  K1 = 0.01, K2 = 0.03, population (not sample) covariances; the map is taken only where the window
  fits inside the image (5-pixel border excluded). This is the common definition (Wang et al. 2004)
  and equals ``skimage.metrics.structural_similarity(a, b, channel_axis=2, data_range=255,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
* "Left": left view with its 64 leftmost columns removed (SR and HR); "(Left+Right)/2": mean of the
  uncropped left and right scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import IpassrError

__all__ = ["psnr", "ssim", "PairScore", "score_pair", "LEFT_CROP", "SSIM_DEFINITION"]

LEFT_CROP = 64
SSIM_DEFINITION = ("SSIM on RGB (mean of the three channels), Gaussian window 11x11, sigma 1.5, "
                   "K1=0.01, K2=0.03, data range 255, population covariance, 5-pixel border excluded "
                   "(= skimage structural_similarity with gaussian_weights=True, sigma=1.5, "
                   "use_sample_covariance=False)")
_K1, _K2, _PEAK = 0.01, 0.03, 255.0
_SIGMA, _RADIUS = 1.5, 5


def _check_pair(a: np.ndarray, b: np.ndarray, what: str) -> None:
    """Both images uint8 with the same shape (H, W, C) or (H, W); raise IpassrError otherwise."""
    if a.shape != b.shape:
        raise IpassrError(f"{what}: image shapes differ ({a.shape} vs {b.shape})")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise TypeError(f"{what}: metrics take 8-bit images (uint8), got {a.dtype} and {b.dtype}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (peak 255, MSE over every pixel and channel); inf if equal."""
    _check_pair(a, b, "psnr")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(_PEAK * _PEAK / mse))


def _gaussian_taps() -> np.ndarray:
    """Normalised 1-D Gaussian, 11 taps, sigma 1.5 (the 2-D window is its outer product)."""
    x = np.arange(-_RADIUS, _RADIUS + 1, dtype=np.float64)
    taps = np.exp(-(x * x) / (2.0 * _SIGMA * _SIGMA))
    return taps / taps.sum()


def _filter_valid(image: np.ndarray) -> np.ndarray:
    """Separable 11x11 Gaussian filter of (H, W, ...) float64, 'valid' part only: (H-10, W-10, ...)."""
    taps = _gaussian_taps()
    height, width = image.shape[:2]
    rows = sum(taps[k] * image[k:height - 2 * _RADIUS + k] for k in range(taps.size))
    return sum(taps[k] * rows[:, k:width - 2 * _RADIUS + k] for k in range(taps.size))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 images (H, W, 3) or (H, W): Gaussian 11x11 sigma 1.5, mean over channels."""
    _check_pair(a, b, "ssim")
    if a.shape[0] < 2 * _RADIUS + 1 or a.shape[1] < 2 * _RADIUS + 1:
        raise IpassrError(f"ssim: image {a.shape[1]}x{a.shape[0]} is smaller than the 11x11 window")
    x, y = a.astype(np.float64), b.astype(np.float64)
    mu_x, mu_y = _filter_valid(x), _filter_valid(y)
    var_x = _filter_valid(x * x) - mu_x * mu_x
    var_y = _filter_valid(y * y) - mu_y * mu_y
    cov = _filter_valid(x * y) - mu_x * mu_y
    c1, c2 = (_K1 * _PEAK) ** 2, (_K2 * _PEAK) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    per_channel = ssim_map.reshape(ssim_map.shape[0] * ssim_map.shape[1], -1).mean(axis=0)
    return float(per_channel.mean())


@dataclass(frozen=True)
class PairScore:
    """Scores of one stereo pair: 'Left' (cropped) and '(Left+Right)/2' (uncropped) PSNR/SSIM."""

    left_psnr: float
    left_ssim: float
    stereo_psnr: float
    stereo_ssim: float

    def to_dict(self) -> dict[str, float]:
        """Plain dict with the JSON keys left_psnr, left_ssim, stereo_psnr, stereo_ssim."""
        return asdict(self)


def score_pair(sr_left: np.ndarray, sr_right: np.ndarray, hr_left: np.ndarray, hr_right: np.ndarray,
               name: str = "pair") -> PairScore:
    """Score an SR pair against its HR pair (all uint8 (H, W, 3)) with the paper's protocol."""
    for view, sr, hr in (("left", sr_left, hr_left), ("right", sr_right, hr_right)):
        if sr.shape != hr.shape:
            raise IpassrError(f"{name}: SR {view} view is {sr.shape[1]}x{sr.shape[0]} but HR is "
                              f"{hr.shape[1]}x{hr.shape[0]}")
    if hr_left.shape[1] <= LEFT_CROP + 2 * _RADIUS:
        raise IpassrError(f"{name}: image is {hr_left.shape[1]} pixels wide, too small for the "
                          f"{LEFT_CROP}-column crop of the 'Left' score")
    left_psnr_full, right_psnr = psnr(sr_left, hr_left), psnr(sr_right, hr_right)
    left_ssim_full, right_ssim = ssim(sr_left, hr_left), ssim(sr_right, hr_right)
    crop_sr, crop_hr = sr_left[:, LEFT_CROP:], hr_left[:, LEFT_CROP:]
    return PairScore(left_psnr=psnr(crop_sr, crop_hr), left_ssim=ssim(crop_sr, crop_hr),
                     stereo_psnr=(left_psnr_full + right_psnr) / 2.0,
                     stereo_ssim=(left_ssim_full + right_ssim) / 2.0)
