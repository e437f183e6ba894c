"""Synthetic stereo pairs from single HR images (issue 13's data experiment).

The image is the left view. Its own segments (Felzenszwalb's graph segmentation) become
fronto-parallel layers, each with one integer disparity; the right view is the left view forward-
warped by those disparities with a z-buffer (the nearer layer wins), so every pixel of either view is
a pixel of the image, never resampled. Disoccluded pixels of the right view take the colour of the
nearest visible pixel to their right (the background side), and the columns whose content lies
beyond the image's right edge are cropped from both views.
"""

from __future__ import annotations

import numpy as np

from ..errors import IpassrError

__all__ = ["segment_disparity", "render_right_view", "synthetic_pair", "too_narrow"]

SEGMENT_SCALE = 1000  # Felzenszwalb's scale: object-sized segments, not texture elements
MIN_SEGMENT_SHARE = 1 / 400  # of the image's area: a few dozen segments, each a layer


def _segments(image: np.ndarray) -> np.ndarray:
    """Felzenszwalb segment labels (H, W) of an RGB uint8 image (scikit-image)."""
    try:
        from skimage.segmentation import felzenszwalb  # optional: ipassr[train]
    except ImportError as exc:
        raise IpassrError("synthetic pairs need scikit-image: pip install 'ipassr[train]'") from exc
    min_size = max(1, round(image.shape[0] * image.shape[1] * MIN_SEGMENT_SHARE))
    return felzenszwalb(image, scale=SEGMENT_SCALE, sigma=0.8, min_size=min_size)


def segment_disparity(image: np.ndarray, rng: np.random.Generator, max_disparity: int) -> np.ndarray:
    """An integer disparity (H, W) constant on each of the image's segments.

    A layered scene: a random slant from far at the top to near at the bottom (evaluated at each
    segment's mean row), plus a random offset per segment, clipped to [0, max_disparity].
    """
    labels = _segments(image)
    height = image.shape[0]
    count = int(labels.max()) + 1
    rows = np.arange(height, dtype=np.float64)[:, None].repeat(image.shape[1], axis=1)
    mean_row = np.bincount(labels.ravel(), rows.ravel(), count) / np.maximum(
        np.bincount(labels.ravel(), minlength=count), 1)
    far = rng.uniform(0, max_disparity / 3)
    near = rng.uniform(max_disparity / 2, max_disparity)
    slant = far + (near - far) * mean_row / max(height - 1, 1)
    offsets = rng.uniform(-max_disparity / 4, max_disparity / 4, count)
    per_segment = np.clip(np.rint(slant + offsets), 0, max_disparity).astype(np.int64)
    return per_segment[labels]


def render_right_view(left: np.ndarray, disparity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward-warp the left view (H, W, C) by its integer disparity (H, W): right[y, x - d] = left[y, x].

    Returns the right view and the left view's occlusion mask (H, W) (True where the pixel is hidden
    in the right view, or falls outside it). Holes of the right view (disocclusions) are filled
    from the nearest visible pixel to their right, else to their left.
    """
    height, width = disparity.shape
    rows = np.arange(height)[:, None].repeat(width, axis=1)
    target = np.arange(width)[None, :] - disparity
    inside = target >= 0
    depth = np.full((height, width), -1, dtype=np.int64)  # the largest disparity landing on each pixel
    np.maximum.at(depth, (rows[inside], target[inside]), disparity[inside])
    visible = inside & (disparity == depth[rows, np.maximum(target, 0)])
    right = np.zeros_like(left)
    right[rows[visible], target[visible]] = left[visible]
    filled = depth >= 0
    columns = np.arange(width)[None, :]
    next_right = np.minimum.accumulate(np.where(filled, columns, width)[:, ::-1], axis=1)[:, ::-1]
    next_left = np.maximum.accumulate(np.where(filled, columns, -1), axis=1)
    source = np.where(next_right < width, next_right, next_left)
    holes = ~filled & (source >= 0)
    right[holes] = right[rows[holes], source[holes]]
    return right, ~visible


def too_narrow(width: int, max_disparity: int) -> bool:
    """Whether an image this wide keeps too little after losing ``max_disparity`` columns."""
    return width <= 2 * max_disparity


def synthetic_pair(image: np.ndarray, rng: np.random.Generator, max_disparity: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, disparity of the left view) from one RGB uint8 image (H, W, 3).

    Both views are cropped by ``max_disparity`` columns on the right, where the right view would
    need content from beyond the image.
    """
    if max_disparity < 1:
        raise IpassrError(f"max disparity must be at least 1 pixel, got {max_disparity}")
    if too_narrow(image.shape[1], max_disparity):
        raise IpassrError(f"image {image.shape[1]} px wide: too narrow for disparities up to "
                          f"{max_disparity} px (needs more than {2 * max_disparity})")
    disparity = segment_disparity(image, rng, max_disparity)
    right, _ = render_right_view(image, disparity)
    keep = image.shape[1] - max_disparity
    return image[:, :keep].copy(), right[:, :keep].copy(), disparity[:, :keep].copy()
