"""The paper's evaluation protocol over test sets in the community layout, and its reports.

A dataset root holds one folder per dataset, each ``<Dataset>/hr/<scene>/hr0.png, hr1.png`` and
``<Dataset>/lr_x{s}/<scene>/lr0.png, lr1.png``. A method turns an LR pair into an SR pair: the
network (``WeightsMethod``), results on disk (``SrDirMethod``, ``D/<Dataset>/<scene>_L.png, _R.png``)
or MATLAB-exact bicubic upsampling (``BicubicMethod``). Every input is checked from image headers
before any scoring (sizes, scale, missing results, grey/RGB mix, the 64-column crop), so a run never
scores a partial set silently. Scores follow ``ipassr.evaluation.metrics`` (paper Sec. 4.1; the protocol in docs/evaluation.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.datasets import TestScene, probe_image, read_testset, subdirectories
from ..errors import ImageReadError, IpassrError
from ..data.io import PathLike, atomic_path, read_image
from .metrics import LEFT_CROP, SSIM_DEFINITION, PairScore, score_pair
from .study import Progress, markdown_table, plural, score_scenes
from ..data.resize import imresize

__all__ = ["Method", "BicubicMethod", "SrDirMethod", "WeightsMethod", "find_datasets", "check_inputs",
           "evaluate", "Report", "format_table", "format_markdown", "METRIC_KEYS"]

METRIC_KEYS = ("left_psnr", "left_ssim", "stereo_psnr", "stereo_ssim")
_MIN_WIDTH = LEFT_CROP + 11   # the cropped left view must still hold one 11x11 SSIM window


class Method:
    """Something that super-resolves an LR pair of a scene; ``label`` names its table row."""

    label: str = "method"

    def super_resolve(self, dataset: str, scene: TestScene, lr_left: np.ndarray, lr_right: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        """SR left and right, uint8 (sH, sW, 3)."""
        raise NotImplementedError

    def missing(self, dataset: str, scenes: list[TestScene]) -> list[str]:
        """Results this method lacks for a dataset (only results on disk can be missing)."""
        return []

    def result_files(self, dataset: str, scene: TestScene) -> tuple[Path, Path] | None:
        """Files of a precomputed SR pair to check from headers, or None."""
        return None


@dataclass
class BicubicMethod(Method):
    """MATLAB-exact bicubic upsampling of the LR pair (``imresize(lr, s)``), the paper's baseline."""

    scale: int
    label: str = "Bicubic"

    def super_resolve(self, dataset, scene, lr_left, lr_right):
        return imresize(lr_left, self.scale), imresize(lr_right, self.scale)


@dataclass
class SrDirMethod(Method):
    """SR results already on disk as ``root/<Dataset>/<scene>_L.png, _R.png``."""

    root: Path
    label: str = ""

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise IpassrError(f"--sr-dir {self.root}: no such folder")
        self.label = self.label or self.root.name

    def result_files(self, dataset, scene):
        return self.root / dataset / f"{scene.name}_L.png", self.root / dataset / f"{scene.name}_R.png"

    def missing(self, dataset, scenes):
        return [str(p) for s in scenes for p in self.result_files(dataset, s) if not p.is_file()]

    def super_resolve(self, dataset, scene, lr_left, lr_right):
        left, right = self.result_files(dataset, scene)
        return read_image(left), read_image(right)


@dataclass
class WeightsMethod(Method):
    """The iPASSR network loaded from a weights file, run on the LR pair (``ipassr.load_model``)."""

    weights: Path
    scale: int
    device: str = "cpu"
    label: str = ""
    dtype: str = "float32"
    max_memory: int | None = None  # bytes of activations per forward pass (None: the default)
    _model: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.weights = Path(self.weights)
        name = self.weights.name
        for suffix in (".pth.tar", ".safetensors", ".pth", ".pt", ".tar"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        self.label = self.label or name

    def load(self) -> None:
        """Load the network (checks the file's scale against the evaluation scale)."""
        from ..inference.api import load_model  # torch only when a network is scored (not for --sr-dir)

        self._model = load_model(self.weights, scale=self.scale, device=self.device,
                                 dtype=self.dtype, max_memory=self.max_memory)
        if self._model.scale != self.scale:
            raise IpassrError(f"{self.weights}: weights are x{self._model.scale} but --scale is {self.scale}")

    @property
    def model(self):
        """The loaded ``StereoSR`` (loaded on first use)."""
        if self._model is None:
            self.load()
        return self._model

    def super_resolve(self, dataset, scene, lr_left, lr_right):
        return self.model.super_resolve(lr_left, lr_right)


def find_datasets(root: PathLike, scale: int) -> list[tuple[str, list[TestScene]]]:
    """Every test-set folder of ``root`` (or ``root`` itself) with its scenes at ``scale``."""
    root = Path(root)
    if not root.is_dir():
        raise IpassrError(f"--dataset-root {root}: no such folder")
    if (root / "hr").is_dir():
        return [(root.name, read_testset(root, scale))]
    folders = [d for d in subdirectories(root) if (d / "hr").is_dir()]
    if not folders:
        raise IpassrError(f"{root}: no datasets found (expected {root}/<Dataset>/hr/<scene>/hr0.png, hr1.png "
                          f"and lr_x{scale}/<scene>/lr0.png, lr1.png; make one with 'ipassr prepare testset')")
    return [(d.name, read_testset(d, scale)) for d in folders]


def _describe(size: tuple[int, int]) -> str:
    """'WxH'."""
    return f"{size[0]}x{size[1]}"


def check_inputs(datasets: list[tuple[str, list[TestScene]]], methods: list[Method], scale: int) -> None:
    """Check every scene and SR result from headers before scoring; one IpassrError lists every problem."""
    missing = [m for name, scenes in datasets for method in methods for m in method.missing(name, scenes)]
    if missing:
        shown = ", ".join(missing[:30]) + (f", ... ({len(missing) - 30} more)" if len(missing) > 30 else "")
        raise IpassrError(f"{len(missing)} SR result(s) missing (no partial scoring): {shown}")
    problems = []
    for name, scenes in datasets:
        for scene in scenes:
            problems += _scene_problems(name, scene, methods, scale)
    if problems:
        shown = "; ".join(problems[:30]) + (f"; ... ({len(problems) - 30} more)" if len(problems) > 30 else "")
        raise IpassrError(f"{len(problems)} problem(s) in the test data: {shown}")


def _scene_problems(dataset: str, scene: TestScene, methods: list[Method], scale: int) -> list[str]:
    """Problems of one scene: unreadable files, size/scale mismatches, grey/RGB mix, too narrow."""
    where = f"{dataset}/{scene.name}"
    files = {"hr0": scene.hr_left, "hr1": scene.hr_right, "lr0": scene.lr_left, "lr1": scene.lr_right}
    try:
        info = {key: probe_image(path) for key, path in files.items()}
    except ImageReadError as exc:
        return [f"{where}: {exc}"]
    problems = []
    hr, lr = info["hr0"][0], info["lr0"][0]
    if info["hr1"][0] != hr or info["lr1"][0] != lr:
        problems.append(f"{where}: left and right views differ in size")
    elif (hr[0] != lr[0] * scale) or (hr[1] != lr[1] * scale):
        problems.append(f"{where}: HR is {_describe(hr)} but LR x{scale} is {_describe(lr)} "
                        f"(expected {_describe((hr[0] // scale, hr[1] // scale))}): sizes do not match the scale")
    kinds = {key: kind for key, (_, kind) in info.items()}
    if kinds["hr0"] != kinds["hr1"] or kinds["lr0"] != kinds["lr1"]:
        problems.append(f"{where}: mixed grayscale/RGB pair "
                        + ", ".join(f"{k} {'grayscale' if v == 'grey' else 'RGB'}" for k, v in kinds.items()))
    if hr[0] < _MIN_WIDTH or hr[1] < 11:
        problems.append(f"{where}: HR is {_describe(hr)}, smaller than the {LEFT_CROP}-column crop of the "
                        f"'Left' score plus an 11x11 SSIM window (needs width >= {_MIN_WIDTH})")
    for method in methods:
        result = method.result_files(dataset, scene)
        if result is None:
            continue
        try:
            probes = [probe_image(p) for p in result]
        except ImageReadError as exc:
            problems.append(f"{where}: {method.label}: {exc}")
            continue
        for path, (size, kind) in zip(result, probes):
            if size != hr:
                problems.append(f"{where}: {method.label} result {path.name} is {_describe(size)} but HR is "
                                f"{_describe(hr)}")
            elif kind != kinds["hr0"]:
                problems.append(f"{where}: {method.label} result {path.name} is "
                                f"{'grayscale' if kind == 'grey' else 'RGB'} but HR is "
                                f"{'grayscale' if kinds['hr0'] == 'grey' else 'RGB'} (mixed grayscale/RGB)")
    return problems


@dataclass
class Report:
    """Scores of every method on every dataset and scene (mean over scenes per dataset)."""

    scale: int
    datasets: list[str]
    methods: list[str]
    scenes: dict[str, dict[str, dict[str, PairScore]]] = field(default_factory=dict)  # method -> dataset -> scene

    def dataset_mean(self, method: str, dataset: str) -> dict[str, float]:
        """Mean of each metric over the scenes of one dataset."""
        scores = list(self.scenes[method][dataset].values())
        return {key: float(np.mean([getattr(s, key) for s in scores])) for key in METRIC_KEYS}

    def to_dict(self) -> dict:
        """JSON-ready dict: per method, per dataset means and per-scene figures."""
        methods = {}
        for method in self.methods:
            methods[method] = {}
            for dataset in self.datasets:
                entry = self.dataset_mean(method, dataset)
                entry["scenes"] = {name: s.to_dict() for name, s in self.scenes[method][dataset].items()}
                methods[method][dataset] = entry
        result = {
            "scale": self.scale,
            "protocol": {
                "quantisation": "SR clamped to [0, 1] and rounded to 8 bits before scoring",
                "left": f"left view, leftmost {LEFT_CROP} columns removed",
                "stereo": "(left + right) / 2, uncropped",
                "psnr": "RGB, peak 255",
                "ssim": SSIM_DEFINITION,
                "dataset_score": "mean over scenes",
            },
            "datasets": self.datasets,
            "methods": methods,
        }
        return result


def evaluate(datasets: list[tuple[str, list[TestScene]]], methods: list[Method], scale: int,
             progress: Progress | None = None) -> Report:
    """Score every method on every scene; inputs are checked first (``check_inputs``)."""
    if not methods:
        raise IpassrError("nothing to evaluate: give --weights, --sr-dir and/or --bicubic")
    labels = [m.label for m in methods]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise IpassrError(f"two methods share the label {', '.join(duplicates)}: name them LABEL=PATH")
    check_inputs(datasets, methods, scale)

    def score(case: tuple[str, TestScene]) -> tuple[str, str, dict[str, PairScore]]:
        name, scene = case
        hr_left, hr_right = read_image(scene.hr_left), read_image(scene.hr_right)
        lr_left, lr_right = read_image(scene.lr_left), read_image(scene.lr_right)
        figures = {}
        for method in methods:
            sr_left, sr_right = method.super_resolve(name, scene, lr_left, lr_right)
            figures[method.label] = score_pair(np.asarray(sr_left), np.asarray(sr_right), hr_left,
                                               hr_right, f"{name}/{scene.name}")
        return name, scene.name, figures

    cases = ((name, scene) for name, scenes in datasets  # one progress bar per dataset
             for scene in (progress(scenes, name) if progress else scenes))
    report = Report(scale, [name for name, _ in datasets], labels,
                    {m.label: {name: {} for name, _ in datasets} for m in methods})
    for name, table in score_scenes(cases, score).items():
        for label, scenes in table.items():
            report.scenes[label][name] = scenes
    return report


def _cell(psnr: float, ssim: float) -> str:
    """'PSNR/SSIM' as in the paper's tables: 2 and 4 decimals."""
    return f"{psnr:.2f}/{ssim:.4f}"


def format_table(report: Report) -> str:
    """Plain-text table in the paper's format: per dataset 'Left' and '(Left+Right)/2' PSNR/SSIM."""
    width = max(len("Method"), *(len(m) for m in report.methods))
    cell = 15
    top = " " * (width + 8) + "".join(f"| {d[: 2 * cell + 1]:^{2 * cell + 1}} " for d in report.datasets)
    mid = f"{'Method':<{width}}  {'Scale':<5} " + "".join(
        f"| {'Left':^{cell}}{'(Left+Right)/2':^{cell + 1}} " for _ in report.datasets)
    lines = [top, mid, "-" * len(mid)]
    for method in report.methods:
        row = f"{method:<{width}}  {'x' + str(report.scale):<5} "
        for dataset in report.datasets:
            mean = report.dataset_mean(method, dataset)
            row += (f"| {_cell(mean['left_psnr'], mean['left_ssim']):^{cell}}"
                    f"{_cell(mean['stereo_psnr'], mean['stereo_ssim']):^{cell + 1}} ")
        lines.append(row.rstrip())
    counts = ", ".join(f"{d}: {plural(len(report.scenes[report.methods[0]][d]), 'scene')}" for d in report.datasets)
    lines.append(f"PSNR (dB) / SSIM; mean over scenes ({counts}). {SSIM_DEFINITION}.")
    return "\n".join(lines)


def format_markdown(report: Report) -> str:
    """Markdown version of the table."""
    headings = ["Method", "Scale"] + [f"{d} {view}" for d in report.datasets
                                      for view in ("Left", "(Left+Right)/2")]
    rows = []
    for method in report.methods:
        cells = []
        for dataset in report.datasets:
            mean = report.dataset_mean(method, dataset)
            cells += [_cell(mean["left_psnr"], mean["left_ssim"]), _cell(mean["stereo_psnr"], mean["stereo_ssim"])]
        rows.append([method, f"x{report.scale}", *cells])
    footer = (f"PSNR (dB) / SSIM, mean over scenes. 'Left': left view without its {LEFT_CROP} "
              f"leftmost columns; '(Left+Right)/2': mean of both uncropped views. {SSIM_DEFINITION}.")
    return "\n".join(markdown_table(f"Stereo SR, x{report.scale}", headings, rows) + [footer]) + "\n"


def write_json(path: PathLike, data: dict) -> None:
    """Write a dict as indented JSON, atomically; inf (identical images) is written as null."""
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(clean(data), indent=2) + "\n", encoding="utf-8")


def write_text(path: PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
