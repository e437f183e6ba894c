"""How well biPAM finds correspondences: disparity read from the attention maps, scored against
ground truth.

The paper's parallax attention is meant to find, for every pixel of one view, its match on the same
row of the other view (Sec. 3.1, Fig. 2). Reading the most attended column of M_R->L (argmax over
the row) gives each left pixel's disparity ``x_left - x_right``; M_L->R gives the right view's.
Both are scored, at LR resolution, against ground-truth disparity on the pixels that are visible in
both views, with occlusions derived from the ground truth itself:

* the left view's GT disparity is brought to the LR grid (median of each s x s block, / s);
* a left pixel is occluded when its match falls outside the right image or when a nearer surface
  (larger disparity) lands on the same right column (z-buffer), with 1 LR pixel of tolerance;
* the right view's GT is the left one splatted onto the right grid (the nearest surface wins);
  right pixels that nothing lands on are occluded in the left view.

Reported per view: the fraction of visible pixels within 1 and 2 LR pixels, the end-point error
(mean absolute error in LR pixels), the mean attention peak, and the valid mask's mean on visible
and on occluded pixels (it should be high on the first, low on the second). Shapes: disparity maps
(H, W) float32 with NaN where unknown; masks (H, W) bool.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..data.disparity import check_disparity_size, lr_blocks
from ..errors import IpassrError
from .study import Column, markdown_tables, plural, score_scenes, text_tables
from ..inference.api import to_batch_tensor
from ..data.io import PathLike

__all__ = ["CorrespondenceScore", "lr_disparity", "occlusion_from_disparity",
           "right_disparity", "score_view", "score_correspondence", "attention_details",
           "motorcycle_correspondence", "summary_row",
           "evaluate_attention", "format_attention_table", "format_attention_markdown"]

VISIBILITY_TOLERANCE = 1.0  # LR pixels: a surface this much nearer than the pixel hides it


@dataclass(frozen=True)
class CorrespondenceScore:
    """biPAM's correspondences of one view against ground truth (fractions in 0..1)."""

    within_1px: float  # visible pixels whose attention disparity is within 1 LR pixel
    within_2px: float
    epe: float  # mean absolute disparity error on visible pixels, LR pixels
    peak: float  # mean of each visible pixel's largest attention weight (1: one-hot, 1/W: uniform)
    valid_visible: float  # mean valid mask on visible pixels (ideally near 1)
    valid_occluded: float  # mean valid mask on occluded pixels (ideally near 0; NaN when none)
    visible: int  # how many pixels were scored
    occluded: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (NaN as None)."""
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in asdict(self).items()}


def lr_disparity(disparity: np.ndarray, scale: int) -> np.ndarray:
    """HR left-view disparity (H, W) -> LR grid (H//s, W//s) in LR pixels; NaN where unknown.

    Each LR pixel takes the median of the valid HR disparities of its s x s block (the median keeps
    depth edges sharp), divided by s. Non-finite input values are unknown.
    """
    blocks = lr_blocks(disparity, scale)
    height, width = blocks.shape[:2]
    known = np.isfinite(blocks).any(axis=-1)
    out = np.full((height, width), np.nan)
    out[known] = np.nanmedian(blocks[known], axis=-1)
    return (out / scale).astype(np.float32)


def _splat(disparity: np.ndarray) -> np.ndarray:
    """The left-view disparity splatted onto the right view's grid: per right pixel the largest
    (nearest) disparity landing on it, both neighbouring columns of a fractional match; NaN where
    nothing lands."""
    height, width = disparity.shape
    right = np.full((height, width), -np.inf)
    rows, cols = np.nonzero(np.isfinite(disparity))
    values = disparity[rows, cols].astype(np.float64)
    target = cols - values
    for column in (np.floor(target), np.ceil(target)):
        inside = (column >= 0) & (column <= width - 1)
        np.maximum.at(right, (rows[inside], column[inside].astype(np.int64)), values[inside])
    return np.where(np.isfinite(right), right, np.nan).astype(np.float32)


def occlusion_from_disparity(disparity: np.ndarray) -> np.ndarray:
    """Left pixels (H, W) visible in the right view, from the left view's GT disparity.

    Visible: known disparity, match inside the right image, and no nearer surface on that right
    column (the splatted disparity there is not more than ``VISIBILITY_TOLERANCE`` larger).
    """
    height, width = disparity.shape
    known = np.isfinite(disparity)
    nearest = _splat(disparity)
    rows, cols = np.nonzero(known)
    target = np.rint(cols - disparity[rows, cols]).astype(np.int64)
    inside = (target >= 0) & (target <= width - 1)
    visible = np.zeros((height, width), dtype=bool)
    rows, cols, target = rows[inside], cols[inside], target[inside]
    front = nearest[rows, target]
    visible[rows, cols] = ~(front > disparity[rows, cols] + VISIBILITY_TOLERANCE)
    return visible


def right_disparity(disparity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The right view's GT disparity (NaN where occluded) and its visibility, from the left view's
    GT (all (H, W)): a right pixel is visible in the left view when some visible left pixel lands
    on it, and occluded otherwise (left pixels of unknown disparity are assumed to land elsewhere).
    """
    visible_left = occlusion_from_disparity(disparity)
    right = _splat(np.where(visible_left, disparity, np.nan))
    return right, np.isfinite(right)


def score_view(estimate: np.ndarray, ground_truth: np.ndarray, visible: np.ndarray,
               peak: np.ndarray, valid: np.ndarray, occluded: np.ndarray | None = None
               ) -> CorrespondenceScore:
    """Score one view: attention disparity ``estimate``, GT, visibility, peak weight and valid mask,
    all (H, W). ``occluded`` defaults to the pixels of known GT that are not visible."""
    known = np.isfinite(ground_truth)
    scored = visible & known
    if occluded is None:
        occluded = known & ~visible
    if not scored.any():
        raise IpassrError("no pixel with ground-truth disparity is visible in both views")
    error = np.abs(estimate[scored] - ground_truth[scored])

    def mean(values: np.ndarray) -> float:
        return float(values.mean()) if values.size else float("nan")

    return CorrespondenceScore(
        within_1px=mean(error <= 1.0), within_2px=mean(error <= 2.0), epe=mean(error),
        peak=mean(peak[scored]), valid_visible=mean(valid[scored]),
        valid_occluded=mean(valid[occluded]), visible=int(scored.sum()),
        occluded=int(occluded.sum()))


def score_correspondence(details: Any, disparity_lr: np.ndarray) -> dict[str, CorrespondenceScore]:
    """Both views' scores from biPAM's per-pixel details (``RowAttention`` of one pair) and the
    left view's LR ground truth (H, W)."""
    def plane(tensor) -> np.ndarray:
        return tensor[0, 0].float().cpu().numpy()

    if tuple(disparity_lr.shape) != tuple(details.valid_left.shape[2:]):
        height, width = details.valid_left.shape[2:]
        raise IpassrError(f"ground truth is {disparity_lr.shape[1]}x{disparity_lr.shape[0]} but "
                          f"the LR views are {width}x{height}")
    estimate_left = -plane(details.peak_offset_left)  # x_left - x_right
    estimate_right = plane(details.peak_offset_right)  # x_left - x_right again
    gt_right, visible_right = right_disparity(disparity_lr)
    return {
        "left": score_view(estimate_left, disparity_lr, occlusion_from_disparity(disparity_lr),
                           plane(details.peak_left), plane(details.valid_left)),
        "right": score_view(estimate_right, gt_right, visible_right, plane(details.peak_right),
                            plane(details.valid_right), occluded=~visible_right),
    }


def attention_details(model: Any, lr_left: np.ndarray, lr_right: np.ndarray) -> Any:
    """biPAM's per-pixel details (``RowAttention``) of one LR pair (uint8 (H, W, 3) arrays), from
    the memory-bounded inference path of a ``StereoSR`` model."""
    left, _ = to_batch_tensor(lr_left, "left")
    right, _ = to_batch_tensor(lr_right, "right")
    return model.forward_with_details(left, right)[2]


def motorcycle_correspondence(model: Any) -> dict[str, CorrespondenceScore]:
    """Correspondence scores of a ``StereoSR`` model on scikit-image's Motorcycle pair (the demo and
    acceptance scene: MATLAB-bicubic LR, GT disparity brought to LR)."""
    from ..data.datasets import stereo_motorcycle
    from ..data.resize import degrade

    hr_left, hr_right, disparity = stereo_motorcycle()
    scale = model.scale
    lr_left, lr_right = degrade(hr_left, scale), degrade(hr_right, scale)
    details = attention_details(model, lr_left, lr_right)
    return score_correspondence(details, lr_disparity(disparity, scale))


def summary_row(scores: dict[str, CorrespondenceScore]) -> dict[str, float]:
    """(L+R)/2 of every score, for logs and tables."""
    left, right = scores["left"].to_dict(), scores["right"].to_dict()
    return {k: (left[k] + right[k]) / 2 if None not in (left[k], right[k]) else None
            for k in ("within_1px", "within_2px", "epe", "peak", "valid_visible",
                      "valid_occluded")}


def write_scores(path: PathLike, scores: dict[str, Any]) -> None:
    """Write scores (nested dicts of ``CorrespondenceScore``) as JSON, atomically."""
    from ..data.io import atomic_path

    def plain(value):
        if isinstance(value, CorrespondenceScore):
            return value.to_dict()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(plain(scores), indent=2), encoding="utf-8")


def evaluate_attention(cases: Any, methods: list[Any], scale: int, progress: Any = None) -> dict:
    """Correspondence scores of every network method on every case with GT disparity.

    ``cases``: ``disparity_benefit.DisparityCase`` items (HR-size GT of the left view); ``methods``:
    ``evaluation.WeightsMethod`` items of networks with biPAM. Returns {"scale", "datasets":
    {dataset: {label: {"left": ..., "right": ..., "mean": ..., "scenes": {scene: ...}}}}}, with
    dataset figures the mean over its scenes.
    """
    def score(case: Any) -> tuple[str, str, dict[str, dict[str, CorrespondenceScore]]]:
        ground_truth = _case_ground_truth(case, scale)
        return case.dataset, case.scene.name, {
            method.label: score_correspondence(
                attention_details(method.model, case.lr_left, case.lr_right), ground_truth)
            for method in methods}

    result: dict[str, Any] = {"scale": scale, "datasets": {}}
    for dataset, table in score_scenes(cases, score, progress, "attention").items():
        result["datasets"][dataset] = {}
        for label, scenes in table.items():
            entry: dict[str, Any] = {}
            for view in ("left", "right"):
                rows = [s[view].to_dict() for s in scenes.values()]
                entry[view] = {k: _mean([r[k] for r in rows]) for k in rows[0]}
            entry["mean"] = summary_row({v: CorrespondenceScore(**entry[v])
                                         for v in ("left", "right")})
            entry["scenes"] = {name: {v: s[v].to_dict() for v in s} for name, s in scenes.items()}
            result["datasets"][dataset][label] = entry
    return result


def _case_ground_truth(case: Any, scale: int) -> np.ndarray:
    """A case's GT disparity checked against its HR view and brought to its LR grid (H, W)."""
    where = f"{case.dataset}/{case.scene.name}"
    check_disparity_size(case.ground_truth, case.hr_left.shape,
                         str(case.scene.disparity or f"{where} disparity"),
                         str(case.scene.hr_left if case.scene.hr_left != Path() else where))
    ground_truth = lr_disparity(case.ground_truth, scale)
    height, width = case.lr_left.shape[:2]
    ground_truth = ground_truth[:height, :width]
    if ground_truth.shape != (height, width):
        raise IpassrError(f"{where}: the LR pair is {width}x{height}, larger than the HR "
                          f"disparity / {scale}")
    return ground_truth


def _mean(values: list) -> Any:
    known = [v for v in values if v is not None]
    if not known:
        return None
    mean = float(np.mean(known))
    return int(round(mean)) if all(isinstance(v, int) for v in known) else mean


def _column(key: str, factor: float) -> Callable[[str, dict], str]:
    """A cell of a method's (L+R)/2 figure ``key``: percentages and EPE to 2 decimals, others 3."""
    def cell(label: str, row: dict) -> str:
        value = row["mean"][key]
        if value is None:
            return "-"
        return f"{value * factor:.2f}" if factor != 1.0 or key == "epe" else f"{value:.3f}"
    return cell


ATTENTION_COLUMNS = tuple(Column(heading, 10, _column(key, factor)) for key, heading, factor in (
    ("within_1px", "<=1px (%)", 100.0), ("within_2px", "<=2px (%)", 100.0),
    ("epe", "EPE (px)", 1.0), ("peak", "peak", 1.0), ("valid_visible", "V visible", 1.0),
    ("valid_occluded", "V occluded", 1.0)))


def format_attention_table(result: dict) -> str:
    """Plain-text table per dataset: (L+R)/2 correspondence scores of each network."""
    return text_tables(
        result, lambda dataset, count: (
            f"biPAM correspondence on {dataset}, x{result['scale']} "
            f"({plural(count, 'scene')} with ground truth; LR pixels)"),
        ATTENTION_COLUMNS,
        "(Left+Right)/2 over the pixels visible in both views (occlusions from the ground "
        "truth); disparity = the most attended column; V = the valid mask's mean, which "
        "should be high on visible and low on occluded pixels.")


def format_attention_markdown(result: dict) -> str:
    """Markdown version of ``format_attention_table``."""
    return markdown_tables(
        result, lambda dataset, count: f"biPAM correspondence on {dataset}, x{result['scale']}",
        ATTENTION_COLUMNS)
