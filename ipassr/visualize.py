"""Pictures of what iPASSR does: valid masks, attention rows, attention disparity, comparisons.

* ``valid mask`` heat maps over the image (the paper's Fig. 3): where a view's pixels found a
  consistent match in the other view (V = 1) or are occluded (V = 0);
* ``attention row``: the (W, W) map of one image row (Fig. 2 and 5), target column down, source
  column across; a clean stereo row is a bright diagonal line offset by the disparity;
* ``attention disparity``: the expected source column under the attention minus the target
  column, i.e. where each pixel looked in the other view. For a rectified pair the left view's
  offset is minus its disparity; the maps show ``disparity = -offset`` for the left view and
  ``+offset`` for the right, both positive for a normal pair;
* ``comparison``: bicubic (MATLAB-exact ``imresize``), SR and optionally HR side by side, each
  with a zoomed crop underneath.

Each picture is a figure (``ipassr.figures``): a title, labels sized to the picture, and a
colour bar with units where colour is a value. All images are uint8 RGB arrays (H, W, 3);
``Visualization.save`` writes them atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from .errors import IpassrError
from .inference.fast.attention import RowAttention
from .inference.api import StereoSR, check_finite, to_batch_tensor
from .data.io import PathLike, tensor_to_image, write_image
from .data.resize import imresize
from .figures import (ColourScale, beside, colormap, enlarge, figure, panels, stack, text_band,
                      text_size, with_axes)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend a heat map (H, W, 3) over a grey version of ``image`` (H, W, 3), both uint8."""
    grey = image.astype(np.float64).mean(axis=2, keepdims=True)
    return np.round((1 - alpha) * grey + alpha * heat.astype(np.float64)).astype(np.uint8)


def mask_heatmap(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Valid mask (H, W) in [0, 1] as a heat map over the image (Fig. 3)."""
    return overlay(image, colormap(mask, 0.0, 1.0))


ATTENTION_GAMMA = 0.5  # < 1 shows the faint mass of an attention map


def attention_row_image(maps: np.ndarray, gamma: float = ATTENTION_GAMMA) -> np.ndarray:
    """One row's attention map (W_target, W_source) as an image; gamma < 1 shows faint mass."""
    peak = max(float(maps.max()), 1e-12)
    return colormap(np.power(maps / peak, gamma), 0.0, 1.0)


def mark_row(image: np.ndarray, row: int) -> np.ndarray:
    """The image with the visualised row drawn as a red line (thicker on large images)."""
    marked = Image.fromarray(image)
    ImageDraw.Draw(marked).line([(0, row), (image.shape[1] - 1, row)], fill=(255, 0, 0),
                                width=max(1, image.shape[1] // 400))
    return np.asarray(marked)


VIEWS = {"left": ("V_L", "left", "right"), "right": ("V_R", "right", "left")}
MASK_SCALE = ColourScale(0.0, 1.0, "valid mask V: 1 = matched in the other view, 0 = occluded "
                                   "(over the grey view)", ticks=(0, 0.25, 0.5, 0.75, 1))


def valid_mask_figure(image: np.ndarray, mask: np.ndarray, view: str, network: str = "iPASSR"
                      ) -> np.ndarray:
    """One view's valid mask over the view, titled, with its colour bar."""
    name, this, other = VIEWS[view]
    return figure(mask_heatmap(image, mask), f"{network} {name}: which {this}-view pixels the "
                  f"{other} view sees", MASK_SCALE)


def valid_masks_figure(left: np.ndarray, right: np.ndarray, mask_left: np.ndarray,
                       mask_right: np.ndarray, network: str = "iPASSR") -> np.ndarray:
    """Both views' valid masks side by side under one title and one colour bar."""
    return panels({"V_L (left view)": mask_heatmap(left, mask_left),
                   "V_R (right view)": mask_heatmap(right, mask_right)},
                  f"{network} valid masks: where each view's pixels are seen in the other view",
                  MASK_SCALE)


def disparity_figure(disparity: np.ndarray, view: str, low: float, high: float) -> np.ndarray:
    """The disparity read off the attention (LR px), titled, with its colour bar."""
    return figure(colormap(disparity, low, high),
                  f"Disparity of the {view} view, read off biPAM's attention",
                  ColourScale(low, high, "disparity (LR pixels): expected match column offset"))


def attention_row_figure(maps: np.ndarray, row: int, direction: str, network: str = "iPASSR"
                         ) -> np.ndarray:
    """One row's (W_target, W_source) attention map with axes, title and colour bar."""
    target, source = ("left", "right") if direction == "right_to_left" else ("right", "left")
    width = maps.shape[0]
    body = with_axes(enlarge(attention_row_image(maps)), f"{source}-view column (LR px)",
                     f"{target}-view column (LR px)", maps.shape[1], width)
    ticks = (0, 0.05, 0.25, 0.5, 1)
    scale = ColourScale(0.0, 1.0, f"attention weight / the map's largest (gamma {ATTENTION_GAMMA})",
                        ticks=ticks, position=lambda v: v ** ATTENTION_GAMMA)
    arrow = "R->L" if direction == "right_to_left" else "L->R"
    return figure(body, f"{network} M_{arrow}, row {row}: where each {target}-view pixel looks "
                  f"in the {source} view", scale)


def marked_row_figure(image: np.ndarray, row: int) -> np.ndarray:
    """The left view with the row whose attention maps are drawn marked in red."""
    return figure(mark_row(image, row), f"Left view (LR), row {row} marked: the row of the "
                  "attention maps")


@dataclass
class Visualization:
    """Everything ``visualize_pair`` computed: labelled figures (uint8 RGB) keyed by output name.

    ``sr_left``/``sr_right`` are the SR views (uint8 (sH, sW, 3)) of the same forward pass, and
    ``seconds`` its time, so a caller that also wants the SR pair need not run the network again.
    """

    images: dict[str, np.ndarray]
    details: RowAttention | None  # iPASSR's per-pixel biPAM details (None for other networks)
    sr_left: np.ndarray
    sr_right: np.ndarray
    seconds: float
    maps: dict[str, np.ndarray]  # the drawn values (H, W) float: valid_*, disparity_* (LR px)

    def save(self, folder: PathLike) -> list[Path]:
        """Write every image as ``<folder>/<name>.png`` (atomically); return the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, image in self.images.items():
            path = folder / f"{name}.png"
            write_image(path, image)
            paths.append(path)
        return paths


def bicubic_upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-exact ``imresize(image, scale, 'bicubic')`` of a uint8 (H, W, 3) image."""
    return imresize(image, scale)


def crop_box(height: int, width: int, crop: tuple[int, int, int, int] | None
             ) -> tuple[int, int, int, int]:
    """A valid (x, y, w, h) box inside the image: the one given, or a centred quarter."""
    if crop is None:
        w, h = max(1, width // 4), max(1, height // 4)
        return (width - w) // 2, (height - h) // 2, w, h
    x, y, w, h = crop
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise IpassrError(f"crop {x},{y},{w},{h} (x,y,w,h) is not inside the {width}x{height} "
                          "SR image")
    return crop


def comparison(panels: dict[str, np.ndarray], crop: tuple[int, int, int, int] | None = None,
               zoom_width: int | None = None, title: str | None = None) -> np.ndarray:
    """Side-by-side panels (same size) under their names, a red crop box, the zoomed crop below,
    and an optional title; labels are sized to the whole picture's width."""
    first = next(iter(panels.values()))
    height, width = first.shape[:2]
    for name, panel in panels.items():
        if panel.shape != first.shape:
            raise IpassrError(f"comparison: panel {name} is {panel.shape[1]}x{panel.shape[0]}, "
                              f"expected {width}x{height}")
    x, y, w, h = crop_box(height, width, crop)
    zoom_width = width if zoom_width is None else zoom_width
    zoom_height = max(1, round(h * zoom_width / w))
    gap = 4
    total = len(panels) * (width + gap) - gap
    size = text_size(total)
    columns = []
    for name, panel in panels.items():
        boxed = Image.fromarray(panel)
        ImageDraw.Draw(boxed).rectangle([x, y, x + w - 1, y + h - 1], outline=(255, 0, 0),
                                        width=max(1, round(total / 800)))
        zoomed = Image.fromarray(panel[y:y + h, x:x + w]).resize((zoom_width, zoom_height),
                                                                  Image.NEAREST)
        columns.append(stack([text_band(name, width, size), np.asarray(boxed),
                              np.asarray(zoomed)], gap))
    picture = beside(columns, gap)
    if title is None:
        return picture
    return stack([text_band(title, total, round(size * 1.25)), picture,
                  text_band("red box: the region enlarged below", total, round(size * 0.8),
                            (110, 110, 110))])


def comparison_title(network: str, scale: int, with_hr: bool) -> str:
    """The comparison picture's title: what is compared, at which scale."""
    return (f"Left view x{scale}: bicubic vs {network}" + (" vs ground truth" if with_hr else ""))


def _array(tensor: torch.Tensor) -> np.ndarray:
    """A float32 NumPy copy of a tensor of any precision and device."""
    return tensor.float().cpu().numpy()


def visualize_pair(model: StereoSR, left: Any, right: Any, *, row: int | None = None,
                   hr_left: Any = None, crop: tuple[int, int, int, int] | None = None
                   ) -> Visualization:
    """Super-resolve a pair and draw its valid masks, one attention row, disparity, comparison.

    ``left``/``right``: PIL images or uint8 (H, W, 3) arrays (LR). ``row`` defaults to the middle
    row. ``hr_left`` (optional) adds a ground-truth panel; ``crop`` is (x, y, w, h) in SR pixels.
    """
    left_t, _ = to_batch_tensor(left, "left")
    right_t, _ = to_batch_tensor(right, "right")
    if left_t.shape != right_t.shape or left_t.shape[0] != 1:
        raise IpassrError("visualize needs one pair of views of the same size")
    check_finite(left_t, "left")
    check_finite(right_t, "right")
    height, width = left_t.shape[2:]
    row = height // 2 if row is None else row
    if not 0 <= row < height:
        raise IpassrError(f"row {row} is outside the image (0..{height - 1})")
    if not (model.spec.banded and model.spec.attention_maps):  # biPAM's details: iPASSR's kind
        return _visualize_other(model, left_t, right_t, row, hr_left, crop)
    started = time.perf_counter()
    sr_left, sr_right, details = model.forward_with_details(left_t, right_t, keep_rows=[row])
    seconds = time.perf_counter() - started
    sr_left, sr_right = (tensor_to_image(v.float().clamp(0, 1)) for v in (sr_left, sr_right))
    lr_left, lr_right = tensor_to_image(left_t), tensor_to_image(right_t)
    valid_left, valid_right, offset_left, disparity_right = (
        _array(t[0, 0]) for t in (details.valid_left, details.valid_right, details.offset_left,
                                  details.offset_right))  # the masks are in the model's precision
    disparity_left = -offset_left
    low = min(disparity_left.min(), disparity_right.min())
    high = max(disparity_left.max(), disparity_right.max())
    right_to_left, left_to_right = (_array(m[0]) for m in details.rows[row])
    maps = {"valid_left": valid_left, "valid_right": valid_right,
            "disparity_left": disparity_left, "disparity_right": disparity_right}
    images = {
        "valid_left": valid_mask_figure(lr_left, valid_left, "left"),
        "valid_right": valid_mask_figure(lr_right, valid_right, "right"),
        "disparity_left": disparity_figure(disparity_left, "left", low, high),
        "disparity_right": disparity_figure(disparity_right, "right", low, high),
        f"attention_row{row}_right_to_left": attention_row_figure(right_to_left, row,
                                                                  "right_to_left"),
        f"attention_row{row}_left_to_right": attention_row_figure(left_to_right, row,
                                                                  "left_to_right"),
        f"row{row}_marked_left": marked_row_figure(lr_left, row),
    }
    panels = {"bicubic": bicubic_upscale(lr_left, model.scale),
              "iPASSR": sr_left}
    images["comparison_left"] = _comparison(panels, hr_left, crop, model)
    return Visualization(images, details, sr_left, sr_right, seconds, maps)


def _comparison(panels: dict[str, np.ndarray], hr_left: Any,
                crop: tuple[int, int, int, int] | None, model: StereoSR) -> np.ndarray:
    """Bicubic / SR (/ HR) side by side; the HR panel must be the SR image's size."""
    if hr_left is not None:
        sr = list(panels.values())[-1]
        hr, _ = to_batch_tensor(hr_left, "HR left")
        hr_image = tensor_to_image(hr)
        if hr_image.shape != sr.shape:
            raise IpassrError(f"HR left is {hr_image.shape[1]}x{hr_image.shape[0]}, but the SR "
                              f"image is {sr.shape[1]}x{sr.shape[0]}")
        panels["ground truth"] = hr_image
    return comparison(panels, crop, title=comparison_title(model.label, model.scale,
                                                           hr_left is not None))


def _visualize_other(model: StereoSR, left: torch.Tensor, right: torch.Tensor, row: int,
                     hr_left: Any, crop: tuple[int, int, int, int] | None) -> Visualization:
    """Networks without biPAM-style details: the attention maps of one row where the spec offers
    them (NAFSSR: its last SCAM's; PASSRnet: its PAM's), the valid masks where it offers them
    (PASSRnet: V_L, and V_R from the mirrored pair), and always the comparison.
    """
    network = model.network
    started = time.perf_counter()
    sr_left, sr_right = model.super_resolve_tensors(left, right)
    seconds = time.perf_counter() - started
    sr_left, sr_right = (tensor_to_image(v.clamp(0, 1)) for v in (sr_left, sr_right))
    lr_left, lr_right = tensor_to_image(left), tensor_to_image(right)
    inputs = left.to(model.device, model.dtype), right.to(model.device, model.dtype)
    rows, masks = {}, {}
    with torch.inference_mode(), model.out_of_memory_explained(left):
        if model.spec.attention_rows:
            rows = dict(zip(("right_to_left", "left_to_right"),
                            (_array(m[0]) for m in network.attention_row(*inputs, row))))
        if model.spec.valid_masks:
            masks["valid_left"] = _array(network.valid_mask(*inputs)[0, 0])
            mirrored = network.valid_mask(inputs[1].flip(-1), inputs[0].flip(-1))
            masks["valid_right"] = _array(mirrored.flip(-1)[0, 0])
    name = model.label
    images = {f"attention_row{row}_{key}": attention_row_figure(maps, row, key, name)
              for key, maps in rows.items()}
    if rows:
        images[f"row{row}_marked_left"] = marked_row_figure(lr_left, row)
    for key, mask in masks.items():
        view = key.removeprefix("valid_")
        images[key] = valid_mask_figure(lr_left if view == "left" else lr_right, mask, view, name)
    panels = {"bicubic": bicubic_upscale(lr_left, model.scale), name: sr_left}
    images["comparison_left"] = _comparison(panels, hr_left, crop, model)
    return Visualization(images, None, sr_left, sr_right, seconds, masks)


__all__ = ["Visualization", "visualize_pair", "colormap", "overlay", "mask_heatmap",
           "attention_row_image", "comparison", "bicubic_upscale", "valid_mask_figure",
           "valid_masks_figure", "disparity_figure", "attention_row_figure", "marked_row_figure"]
