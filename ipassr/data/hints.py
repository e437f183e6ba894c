"""Disparity hints for training biPAM: OpenCV's semi-global matching (SGBM) on the HR pair, at LR scale.

Not in the paper. iPASSR learns its attention only from its own losses (photometric, cycle,
consistency, smoothness), which cannot tell matches apart in flat, dark areas. An optional
training term (``--hint-weight``, ``losses.hint_loss``) pulls each attention row toward the
column SGBM found, where SGBM is confident. ``ipassr prepare patches --hints`` stores the hints
with the patches. On Motorcycle, SGBM's hints at x2 cover 92% of the pixels with a ground truth
and 94.5% of those are within 1 LR pixel of it (tests/test_hints.py).
"""

from __future__ import annotations

import warnings

import numpy as np

from .disparity import lr_blocks, sgbm_disparity

__all__ = ["MAX_DISPARITY", "sgbm_disparities", "confident_lr_disparity", "pair_hints"]

MAX_DISPARITY = 256  # HR pixels searched, a multiple of 16 as OpenCV asks (the training pairs' 95th
# percentiles reach 250)


def sgbm_disparities(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SGBM disparities (H, W) of both views of a rectified uint8 RGB pair, HR px, NaN where unknown.

    Left pixel x matches right x - d_left; right pixel x matches left x + d_right (found by
    matching the mirrored views, so both are positive). Every column is searched, in all 8
    directions; SGBM's own left-right check (``disp12MaxDiff=1``) and speckle filter remove the
    unreliable ones.
    """
    options = {"eight_paths": True, "every_column": True}
    disparity_left = sgbm_disparity(left, right, MAX_DISPARITY, **options)
    disparity_right = sgbm_disparity(right[:, ::-1], left[:, ::-1], MAX_DISPARITY, **options)[:, ::-1]
    return disparity_left, np.ascontiguousarray(disparity_right)


def confident_lr_disparity(disparity: np.ndarray, scale: int) -> np.ndarray:
    """HR disparity (H, W) -> LR (H//s, W//s), in LR px: each s x s block's median, NaN unless at
    least half of the block is known and its known values span at most s HR px (one LR px)."""
    blocks = lr_blocks(disparity, scale)
    known = np.isfinite(blocks).sum(-1)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
        median = np.nanmedian(blocks, -1)
        spread = np.nanmax(blocks, -1) - np.nanmin(blocks, -1)
    hints = (median / scale).astype(np.float32)
    hints[(known < scale * scale / 2) | ~(spread <= scale)] = np.nan
    return hints


def pair_hints(hr_left: np.ndarray, hr_right: np.ndarray, scale: int) -> np.ndarray:
    """Hints (2, H//s, W//s) of an HR pair (mod-cropped to s): LR disparities of the left and right views."""
    disparity_left, disparity_right = sgbm_disparities(hr_left, hr_right)
    return np.stack([confident_lr_disparity(disparity_left, scale),
                     confident_lr_disparity(disparity_right, scale)])
