"""The demo: what stereo super-resolution does, on a real pair, in one command.

By default it takes the Middlebury *Motorcycle* pair that scikit-image ships, makes its LR views
with the MATLAB-exact bicubic, super-resolves them, and scores iPASSR against bicubic upsampling
with the paper's protocol, and scores biPAM's matches against the pair's ground-truth disparity.
With a pair of one's own, the pair is the LR input and there is no score.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.datasets import stereo_motorcycle
from .inference.api import StereoSR
from .data.io import PathLike, atomic_path, write_image
from .data.media import read_views
from .evaluation.correspondence import lr_disparity, score_correspondence, summary_row
from .evaluation.metrics import score_pair
from .data.resize import degrade, imresize, mod_crop
from .visualize import comparison, comparison_title, valid_masks_figure, visualize_pair


@dataclass
class DemoPair:
    """The LR input pair (uint8 (h, w, 3)), and the HR pair and its left-view disparity (H, W)
    when they are known."""

    name: str
    lr_left: np.ndarray
    lr_right: np.ndarray
    hr_left: np.ndarray | None = None
    hr_right: np.ndarray | None = None
    disparity: np.ndarray | None = None


@dataclass
class DemoResult:
    """What the demo measured and where it wrote everything."""

    pair: str
    scale: int
    weights: str
    seconds: float
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> PairScore dict
    correspondence: dict[str, float] | None = None  # biPAM's matches, (L+R)/2 (summary_row)
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"pair": self.pair, "scale": self.scale, "weights": self.weights,
                "seconds": round(self.seconds, 3), "scores": self.scores,
                "correspondence": self.correspondence,
                "files": {k: str(v) for k, v in self.files.items()}}


def motorcycle_pair(scale: int) -> DemoPair:
    """scikit-image's Motorcycle pair: HR mod-cropped to ``scale``, LR by MATLAB-exact bicubic."""
    left, right, disparity = stereo_motorcycle("pass --left/--right")
    hr_left, hr_right = mod_crop(left, scale), mod_crop(right, scale)
    return DemoPair("Middlebury Motorcycle (scikit-image)", degrade(hr_left, scale),
                    degrade(hr_right, scale), hr_left, hr_right, disparity)


def own_pair(left: PathLike, right: PathLike) -> DemoPair:
    """A user's pair, used as the LR input (no ground truth, so no scores)."""
    photo = read_views(left, right)
    return DemoPair(f"{left} + {right}", photo.left, photo.right)


def run_demo(model: StereoSR, pair: DemoPair, output_dir: PathLike, weights_label: str
             ) -> DemoResult:
    """Super-resolve ``pair``, score it against bicubic when HR is known and biPAM's matches when
    the disparity is, write every output."""
    output_dir = Path(output_dir)
    bicubic_left = imresize(pair.lr_left, model.scale)
    label = model.label
    if not model.has_attention:  # no biPAM valid masks to show
        started = time.perf_counter()
        sr_left, sr_right = model.super_resolve(pair.lr_left, pair.lr_right)
        seconds = time.perf_counter() - started
        panels = {"bicubic": bicubic_left, label: sr_left}
        if pair.hr_left is not None:
            panels["ground truth"] = pair.hr_left
        extra = {"comparison": comparison(panels, title=comparison_title(
            label, model.scale, pair.hr_left is not None))}
        details = None
    else:  # one forward pass gives the SR pair and the masks
        pictures = visualize_pair(model, pair.lr_left, pair.lr_right, hr_left=pair.hr_left)
        sr_left, sr_right, seconds = pictures.sr_left, pictures.sr_right, pictures.seconds
        details = pictures.details  # biPAM's per-pixel matches (iPASSR's kind only)
        extra = {"comparison": pictures.images["comparison_left"],
                 "valid_masks": valid_masks_figure(pair.lr_left, pair.lr_right,
                                                   pictures.maps["valid_left"],
                                                   pictures.maps["valid_right"], label)}
    result = DemoResult(pair.name, model.scale, weights_label, seconds)
    if details is not None and pair.disparity is not None:
        scores = score_correspondence(details, lr_disparity(pair.disparity, model.scale))
        result.correspondence = summary_row(scores)
    if pair.hr_left is not None:
        bicubic = (bicubic_left, imresize(pair.lr_right, model.scale))
        result.scores["bicubic"] = score_pair(*bicubic, pair.hr_left, pair.hr_right).to_dict()
        result.scores[label] = score_pair(sr_left, sr_right, pair.hr_left,
                                             pair.hr_right).to_dict()
    images = {"lr_left": pair.lr_left, "lr_right": pair.lr_right,
              "sr_left": sr_left, "sr_right": sr_right, **extra}
    for name, image in images.items():
        result.files[name] = output_dir / f"{name}.png"
        write_image(result.files[name], image)
    result.files["report"] = output_dir / "report.md"
    result.files["report_json"] = output_dir / "report.json"
    write_text(result.files["report_json"], json.dumps(result.to_dict(), indent=1) + "\n")
    write_text(result.files["report"], format_report(result))
    return result


def correspondence_line(scores: dict[str, float]) -> str:
    """One line on how well biPAM found the matches ((L+R)/2 of ``summary_row``)."""
    return (f"biPAM matches {100 * scores['within_1px']:.1f}% of the pixels visible in both views "
            f"within 1 LR pixel; valid mask {scores['valid_visible']:.2f} where visible, "
            f"{scores['valid_occluded']:.2f} where occluded")


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def format_report(result: DemoResult) -> str:
    """The demo's short Markdown report."""
    lines = [f"# ipassr demo: x{result.scale}", "",
             f"- pair: {result.pair}", f"- weights: {result.weights}",
             f"- super-resolution time: {result.seconds:.2f} s (both views, CPU/GPU as run)", ""]
    if result.scores:
        lines += ["| method | Left PSNR / SSIM | (Left+Right)/2 PSNR / SSIM |", "| --- | --- | --- |"]
        for method, s in result.scores.items():
            lines.append(f"| {method} | {s['left_psnr']:.2f} / {s['left_ssim']:.4f} | "
                         f"{s['stereo_psnr']:.2f} / {s['stereo_ssim']:.4f} |")
        network = next(m for m in result.scores if m != "bicubic")
        gain = result.scores[network]["stereo_psnr"] - result.scores["bicubic"]["stereo_psnr"]
        lines += ["", f"{network} vs bicubic, (Left+Right)/2 PSNR: {gain:+.2f} dB", "",
                  "PSNR on RGB, 8-bit outputs; 'Left' drops the 64 leftmost columns; SSIM "
                  "Gaussian 11x11, sigma 1.5 (see docs/evaluation.md)."]
    else:
        lines.append("No ground truth for this pair, so no scores.")
    if result.correspondence is not None:
        lines += ["", correspondence_line(result.correspondence),
                  "(disparity from the argmax of biPAM's maps; ground truth brought to LR; "
                  "see docs/evaluation.md)"]
    lines += ["", "Files: " + ", ".join(p.name for k, p in result.files.items()
                                          if not k.startswith("report")), ""]
    return "\n".join(lines)
