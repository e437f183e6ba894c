"""Disparity benefit of SR (the paper's Table 5 idea) with a real, light stereo matcher.

The paper runs GwcNet on SR stereo pairs; here OpenCV's semi-global matcher (StereoSGBM, optional
extra ``ipassr[stereo]``) runs on the HR, bicubic and SR pairs and the estimated left-view
disparity is scored against ground truth: end-point error (EPE, mean absolute difference in pixels)
and the percentages of pixels off by more than 1, 2 and 3 pixels, over pixels with valid ground truth.

SGBM leaves pixels without an estimate (occlusions, the left border, failed uniqueness checks);
they are filled as the KITTI development kit does (each row's hole takes the smaller, i.e. farther,
of its two nearest valid neighbours), so every method is scored on the same pixels; the share of
pixels SGBM estimated itself is reported as ``density``.

Ground truth readers: PFM (Middlebury ``disp0.pfm``/``disp0GT.pfm``, ETH3D; non-finite = invalid)
and KITTI 16-bit PNG (value / 256, 0 = invalid). Invalid pixels are NaN in every returned map.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import IpassrError
from .io import PathLike, atomic_path, require_opencv

__all__ = ["read_pfm", "write_pfm", "read_disparity", "check_disparity_size", "sgbm_disparity",
           "fill_holes", "DisparityScore", "score_disparity", "num_disparities", "require_opencv"]

ERROR_THRESHOLDS = (1, 2, 3)


def check_disparity_size(disparity: np.ndarray, image_shape: tuple[int, ...], disparity_name: str,
                         image_name: str) -> None:
    """Refuse a ground-truth disparity whose size is not its image's, naming both."""
    if tuple(disparity.shape[:2]) != tuple(image_shape[:2]):
        raise IpassrError(
            f"{disparity_name}: disparity is {disparity.shape[1]}x{disparity.shape[0]} but its "
            f"image {image_name} is {image_shape[1]}x{image_shape[0]}")


def read_pfm(path: PathLike) -> np.ndarray:
    """Read a single-channel PFM as float32 (H, W), top row first; non-finite values become NaN."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            kind = handle.readline().strip()
            dims = handle.readline()
            while dims.startswith(b"#"):
                dims = handle.readline()
            width, height = (int(v) for v in dims.split())
            scale = float(handle.readline().strip())
            data = handle.read()
    except (OSError, ValueError) as exc:
        raise IpassrError(f"{path}: not a readable PFM file ({exc})") from exc
    channels = {b"Pf": 1, b"PF": 3}.get(kind)
    if channels is None:
        raise IpassrError(f"{path}: not a PFM file (header {kind[:8]!r})")
    count = width * height * channels
    if len(data) < 4 * count:
        raise IpassrError(f"{path}: truncated PFM ({len(data)} bytes of data, expected {4 * count})")
    values = np.frombuffer(data, dtype="<f4" if scale < 0 else ">f4", count=count)
    image = values.reshape(height, width, channels)[::-1, :, 0].astype(np.float32)
    image[~np.isfinite(image)] = np.nan
    return np.ascontiguousarray(image)


def write_pfm(path: PathLike, disparity: np.ndarray) -> None:
    """Write float (H, W) as a little-endian single-channel PFM (atomically); NaN is stored as inf."""
    values = np.asarray(disparity, dtype=np.float32).copy()
    values[~np.isfinite(values)] = np.inf
    header = f"Pf\n{values.shape[1]} {values.shape[0]}\n-1\n".encode("ascii")
    with atomic_path(path) as tmp:
        tmp.write_bytes(header + values[::-1].astype("<f4").tobytes())


def read_disparity(path: PathLike) -> np.ndarray:
    """Ground-truth disparity as float32 (H, W), NaN where invalid: PFM, or KITTI 16-bit PNG (/256, 0 = invalid)."""
    path = Path(path)
    if path.suffix.lower() == ".pfm":
        return read_pfm(path)
    try:
        with Image.open(path) as image:
            raw = np.asarray(image)
    except Exception as exc:
        raise IpassrError(f"{path}: not a readable disparity image ({exc.__class__.__name__})") from exc
    if raw.ndim != 2 or raw.dtype not in (np.uint16, np.int32, np.uint8):
        raise IpassrError(f"{path}: expected a single-channel 16-bit KITTI disparity PNG, got {raw.dtype} "
                          f"with shape {raw.shape}")
    disparity = raw.astype(np.float32) / 256.0
    disparity[raw == 0] = np.nan
    return disparity


def lr_blocks(disparity: np.ndarray, scale: int) -> np.ndarray:
    """HR disparity (H, W) -> the s x s block under each LR pixel, (H//s, W//s, s*s) float64, NaN
    where unknown (any non-finite input value)."""
    disparity = np.asarray(disparity, dtype=np.float64)
    height, width = disparity.shape[0] // scale, disparity.shape[1] // scale
    blocks = disparity[:height * scale, :width * scale].reshape(height, scale, width, scale)
    blocks = np.where(np.isfinite(blocks), blocks, np.nan).transpose(0, 2, 1, 3)
    return blocks.reshape(height, width, scale * scale)


def num_disparities(width: int, ground_truth: np.ndarray | None = None) -> int:
    """SGBM disparity range (multiple of 16): 10% above the largest GT disparity, else a quarter of the width."""
    if ground_truth is not None and np.isfinite(ground_truth).any():
        top = float(np.nanmax(ground_truth)) * 1.1 + 1
    else:
        top = width / 4.0
    return max(16, int(math.ceil(top / 16.0)) * 16)


def sgbm_disparity(left: np.ndarray, right: np.ndarray, max_disparity: int, block_size: int = 5,
                   *, eight_paths: bool = False, every_column: bool = False) -> np.ndarray:
    """Left-view disparity float32 (H, W) of an RGB uint8 pair by StereoSGBM; NaN where none.

    3-way by default (the disparity-benefit study); ``eight_paths``: OpenCV's full 8-direction
    mode (MODE_HH). SGBM leaves the first ``max_disparity`` columns unmatched; ``every_column``
    pads both views on the left with their edge columns first, so that every column is searched.
    """
    cv2 = require_opencv()
    mode = cv2.STEREO_SGBM_MODE_HH if eight_paths else cv2.STEREO_SGBM_MODE_SGBM_3WAY
    matcher = cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=int(max_disparity), blockSize=block_size,
        P1=8 * 3 * block_size ** 2, P2=32 * 3 * block_size ** 2, disp12MaxDiff=1,
        uniquenessRatio=10, speckleWindowSize=100, speckleRange=2, mode=mode)
    pad = int(max_disparity) if every_column else 0
    bgr = [np.pad(v[:, :, ::-1], ((0, 0), (pad, 0), (0, 0)), mode="edge") for v in (left, right)]
    raw = matcher.compute(bgr[0], bgr[1])[:, pad:].astype(np.float32) / 16.0  # fixed point, 4 fractional bits
    raw[raw < 0] = np.nan
    return raw


def fill_holes(disparity: np.ndarray) -> np.ndarray:
    """KITTI-style background fill along rows: a hole takes min(nearest valid left, nearest valid right)."""
    valid = np.isfinite(disparity)
    height, width = disparity.shape
    columns = np.broadcast_to(np.arange(width), (height, width))
    left_idx = np.maximum.accumulate(np.where(valid, columns, -1), axis=1)
    right_idx = np.minimum.accumulate(np.where(valid, columns, width)[:, ::-1], axis=1)[:, ::-1]
    left_val = np.take_along_axis(disparity, np.clip(left_idx, 0, width - 1), axis=1)
    right_val = np.take_along_axis(disparity, np.clip(right_idx, 0, width - 1), axis=1)
    left_val = np.where(left_idx >= 0, left_val, np.nan)
    right_val = np.where(right_idx < width, right_val, np.nan)
    filled = np.where(valid, disparity, np.fmin(left_val, right_val))
    return np.nan_to_num(filled, nan=0.0).astype(np.float32)


@dataclass(frozen=True)
class DisparityScore:
    """Errors of an estimated disparity map: EPE (px), >1/2/3 px rates (%), SGBM density (%)."""

    epe: float
    bad1: float
    bad2: float
    bad3: float
    density: float

    def to_dict(self) -> dict[str, float]:
        """Plain dict for JSON."""
        return asdict(self)


def score_disparity(estimate: np.ndarray, ground_truth: np.ndarray, name: str = "scene") -> DisparityScore:
    """Score a raw SGBM map (NaN = no estimate) against GT (NaN = invalid) after KITTI-style filling."""
    if estimate.shape != ground_truth.shape:
        raise IpassrError(f"{name}: disparity map is {estimate.shape[1]}x{estimate.shape[0]} but the ground "
                          f"truth is {ground_truth.shape[1]}x{ground_truth.shape[0]}")
    mask = np.isfinite(ground_truth)
    if not mask.any():
        raise IpassrError(f"{name}: ground-truth disparity has no valid pixel")
    error = np.abs(fill_holes(estimate)[mask] - ground_truth[mask])
    rates = [100.0 * float(np.mean(error > t)) for t in ERROR_THRESHOLDS]
    density = 100.0 * float(np.mean(np.isfinite(estimate[mask])))
    return DisparityScore(float(error.mean()), *rates, density)

