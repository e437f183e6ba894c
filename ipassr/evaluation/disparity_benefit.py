"""The disparity-benefit study (the paper's Table 5 idea): StereoSGBM disparity of HR, bicubic and SR
pairs, scored against ground truth (scikit-image's Motorcycle, or test sets with ``disp0.pfm``).
Needs OpenCV (``ipassr[stereo]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..data.datasets import TestScene, probe_image, stereo_motorcycle
from ..data.disparity import (check_disparity_size, fill_holes, num_disparities, read_disparity,
                        require_opencv, score_disparity, sgbm_disparity)
from ..errors import IpassrError
from .protocol import BicubicMethod, Method
from .study import Column, Progress, markdown_tables, plural, score_scenes, text_tables
from ..data.io import read_image
from ..data.resize import degrade, mod_crop

MOTORCYCLE = ("Motorcycle", "motorcycle")   # dataset and scene names of the scikit-image pair
DISPARITY_KEYS = ("epe", "bad1", "bad2", "bad3", "density", "epe_vs_hr")


@dataclass
class DisparityCase:
    """One scene with ground truth: HR and LR pairs (uint8 (H, W, 3)) and GT disparity (H, W), NaN invalid."""

    dataset: str
    scene: TestScene
    hr_left: np.ndarray
    hr_right: np.ndarray
    lr_left: np.ndarray
    lr_right: np.ndarray
    ground_truth: np.ndarray


def motorcycle_case(scale: int) -> DisparityCase:
    """scikit-image's Middlebury Motorcycle pair with GT: HR mod-cropped to 4, LR MATLAB-exact."""
    left, right, disparity = stereo_motorcycle()
    ground_truth = mod_crop(np.asarray(disparity, dtype=np.float32), 4).copy()
    ground_truth[~np.isfinite(ground_truth)] = np.nan
    hr_left, hr_right = mod_crop(left, 4), mod_crop(right, 4)
    scene = TestScene(MOTORCYCLE[1], Path(), Path(), Path(), Path())
    return DisparityCase(MOTORCYCLE[0], scene, hr_left, hr_right, degrade(hr_left, scale),
                         degrade(hr_right, scale), ground_truth)


def check_ground_truth_sizes(datasets: list[tuple[str, list[TestScene]]]) -> None:
    """Refuse, before any scoring, a ground-truth disparity whose size is not its HR image's."""
    for _, scenes in datasets:
        for scene in scenes:
            if scene.disparity is not None:
                (width, height), _ = probe_image(scene.hr_left)
                check_disparity_size(read_disparity(scene.disparity), (height, width),
                                     str(scene.disparity), str(scene.hr_left))


def disparity_cases(datasets: list[tuple[str, list[TestScene]]]) -> Iterable[DisparityCase]:
    """Scenes of the test sets that have ground truth (hr/<scene>/disp0.pfm), loaded one at a time."""
    for name, scenes in datasets:
        for scene in scenes:
            if scene.disparity is None:
                continue
            ground_truth = read_disparity(scene.disparity)
            hr_left = read_image(scene.hr_left)
            check_disparity_size(ground_truth, hr_left.shape, str(scene.disparity),
                                 str(scene.hr_left))
            yield DisparityCase(name, scene, hr_left, read_image(scene.hr_right), read_image(scene.lr_left),
                                read_image(scene.lr_right), ground_truth)


def evaluate_disparity(cases: Iterable[DisparityCase], methods: list[Method], scale: int,
                       progress: Progress | None = None) -> dict:
    """SGBM on HR, bicubic and every method's SR pair; EPE and >1/2/3 px rates per dataset (mean over scenes)."""
    require_opencv()
    rows = [BicubicMethod(scale)] + [m for m in methods if not isinstance(m, BicubicMethod)]

    def score(case: DisparityCase) -> tuple[str, str, dict[str, dict[str, float]]]:
        where = f"{case.dataset}/{case.scene.name}"
        span = num_disparities(case.hr_left.shape[1], case.ground_truth)
        hr_estimate = sgbm_disparity(case.hr_left, case.hr_right, span)
        pairs = [(m.label, m.super_resolve(case.dataset, case.scene, case.lr_left, case.lr_right))
                 for m in rows]
        figures = {}
        for label, (left, right) in pairs + [("HR", (case.hr_left, case.hr_right))]:
            left, right = np.asarray(left), np.asarray(right)
            if left.shape != case.hr_left.shape:
                raise IpassrError(f"{where}: {label} result is {left.shape[1]}x{left.shape[0]} but HR is "
                                  f"{case.hr_left.shape[1]}x{case.hr_left.shape[0]}")
            estimate = hr_estimate if label == "HR" else sgbm_disparity(left, right, span)
            figures[label] = score_disparity(estimate, case.ground_truth, where).to_dict()
            figures[label]["epe_vs_hr"] = _epe_between(estimate, hr_estimate)
        return case.dataset, case.scene.name, figures

    by_scene = score_scenes(cases, score, progress, "disparity")
    if not by_scene:
        raise IpassrError("no scene with ground-truth disparity (hr/<scene>/disp0.pfm); run "
                          "'ipassr evaluate --disparity' without --dataset-root for the Motorcycle pair")
    result = {"scale": scale,
              "matcher": "OpenCV StereoSGBM (3-way, block 5, P1=8*3*25, P2=32*3*25, uniqueness 10, "
                         "speckle 100/2), range: 1.1 x max GT disparity rounded up to 16",
              "holes": "Pixels without an SGBM estimate filled KITTI-style (min of nearest valid row "
                       "neighbours); density = share of GT-valid pixels SGBM estimated itself",
              "datasets": {}}
    for dataset, table in by_scene.items():
        result["datasets"][dataset] = {
            label: {**{k: float(np.mean([s[k] for s in scenes.values()])) for k in DISPARITY_KEYS},
                    "scenes": scenes}
            for label, scenes in table.items()}
    return result


def _epe_between(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Mean absolute difference of two (filled) SGBM maps over all pixels: consistency with HR matching."""

    return float(np.mean(np.abs(fill_holes(estimate) - fill_holes(reference))))


def _figure(key: str, decimals: int) -> Callable[[str, dict], str]:
    return lambda label, row: f"{row[key]:.{decimals}f}"


DISPARITY_COLUMNS = (
    Column("EPE", 6, _figure("epe", 3)), Column(">1px (%)", 8, _figure("bad1", 2), ">1px(%)"),
    Column(">2px (%)", 8, _figure("bad2", 2), ">2px(%)"),
    Column(">3px (%)", 8, _figure("bad3", 2), ">3px(%)"),
    Column("density (%)", 10, _figure("density", 1), "density(%)"),
    Column("EPE vs HR", 9, lambda label, row: "-" if label == "HR" else f"{row['epe_vs_hr']:.3f}"))


def format_disparity_table(result: dict) -> str:
    """Plain-text Table-5-style table per dataset: EPE, >1px, >2px, >3px, density, EPE vs HR."""
    return text_tables(
        result, lambda dataset, count: (f"Disparity (StereoSGBM) on {dataset}, x{result['scale']} "
                                        f"SR, {plural(count, 'scene')} with ground truth"),
        DISPARITY_COLUMNS,
        "Lower is better. HR = upper bound, Bicubic = baseline. " + result["holes"] + ".")


def format_disparity_markdown(result: dict) -> str:
    """Markdown version of the disparity table."""
    return markdown_tables(
        result, lambda dataset, count: (f"Disparity benefit on {dataset}, x{result['scale']} "
                                        f"({plural(count, 'scene')}, StereoSGBM)"),
        DISPARITY_COLUMNS, f"Matcher: {result['matcher']}. {result['holes']}.")
