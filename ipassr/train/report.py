"""Training you can watch: ``RUN/curves.png``, the losses and validation scores of ``log.jsonl``.

The trainer redraws it whenever it logs a validation, an epoch or its stop (``redraw``), and
``ipassr report RUN`` redraws it from the log alone, e.g. for a run that was copied elsewhere.
Drawing never stops training: a failure to write the picture is a warning.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ..data.io import PathLike, write_image
from ..errors import IpassrError
from ..figures import stack, text_band
from ..plots import Series, line_chart

CURVES = "curves.png"
REDRAW_EVENTS = ("validation", "epoch", "stop")  # the log records after which the trainer redraws
WIDTH = 1000
TERMS = {"total": "total", "sr": "SR (L1)", "photo": "photometric", "smooth": "smoothness",
         "cycle": "cycle", "cons": "consistency", "hint": "disparity hints"}


def read_log(path: Path) -> list[dict]:
    """The records of a run's ``log.jsonl``; a line cut short by a crash is skipped."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def loss_series(records: list[dict]) -> list[Series]:
    """One series per loss term (total first) against the global step."""
    steps = [r for r in records if r.get("event") == "step" and "loss" in r]
    names = list(dict.fromkeys(k for r in steps for k in r["loss"]))
    return [Series(TERMS.get(name, name), [r["global_step"] for r in steps if name in r["loss"]],
                   [r["loss"][name] for r in steps if name in r["loss"]]) for name in names]


def validation_series(records: list[dict]) -> list[Series]:
    """Left and (Left+Right)/2 PSNR per validation dataset against the global step."""
    validations = [r for r in records if r.get("event") == "validation"]
    datasets = list(dict.fromkeys(d for r in validations for d in r.get("val", {})))
    series = []
    for dataset in datasets:
        for key, label in (("left_psnr", "Left"), ("stereo_psnr", "(L+R)/2")):
            done = [r for r in validations if key in r.get("val", {}).get(dataset, {})]
            series.append(Series(f"{dataset} {label}", [r["global_step"] for r in done],
                                 [r["val"][dataset][key] for r in done], markers=True))
    return series


def correspondence_series(records: list[dict]) -> list[Series]:
    """biPAM's matches within 1 and 2 LR px on Motorcycle (percent), when they were scored."""
    scored = [r for r in records if r.get("event") == "validation" and "correspondence" in r]
    return [Series(f"within {n} px", [r["global_step"] for r in scored],
                   [100 * r["correspondence"][f"within_{n}px"] for r in scored], markers=True)
            for n in (1, 2) if scored]


def headline(run: Path, records: list[dict]) -> str:
    """'RUN: x2 iPASSR, step N, best val_left_psnr V at step S' from the log."""
    config = next((r["config"] for r in records if "config" in r), {})
    last = max((r.get("global_step", 0) for r in records), default=0)
    text = f"Training run {run.name}: x{config.get('scale', '?')} iPASSR, {last} steps"
    validations = [r for r in records if r.get("event") == "validation" and r.get("val")]
    if validations:
        best = max(validations, key=lambda r: np.mean([v["left_psnr"] for v in r["val"].values()]))
        mean = np.mean([v["left_psnr"] for v in best["val"].values()])
        text += f"; best validation Left PSNR {mean:.2f} dB at step {best['global_step']}"
    return text


def draw_report(run: Path, records: list[dict]) -> np.ndarray:
    """The report picture: a headline, then losses, validation PSNR and (if scored) matches, on
    one step axis from 0 to the last step."""
    steps = (0, max((r.get("global_step", 0) for r in records), default=0))
    charts = [text_band(headline(run, records), WIDTH, 22),
              line_chart(loss_series(records), "Training losses (log scale)", "global step",
                         "loss", width=WIDTH, log_y=True, x_range=steps),
              line_chart(validation_series(records), "Validation PSNR", "global step",
                         "PSNR (dB)", width=WIDTH, x_range=steps,
                         empty_note="no validation yet (train with --validate ROOT)")]
    matches = correspondence_series(records)
    if matches:
        charts.append(line_chart(matches, "biPAM's matches on Motorcycle (ground-truth "
                                 "disparity)", "global step", "matches (%)", width=WIDTH,
                                 x_range=steps))
    return stack(charts, gap=12)


def write_report(run_dir: PathLike) -> Path:
    """Draw ``RUN/curves.png`` from ``RUN/log.jsonl``; IpassrError when there is no log."""
    run = Path(run_dir)
    log = run / "log.jsonl"
    if not log.is_file():
        raise IpassrError(f"{run}: not a training run (no log.jsonl)")
    path = run / CURVES
    write_image(path, draw_report(run, read_log(log)))
    return path


def redraw(run_dir: PathLike) -> None:
    """``write_report`` for the trainer: a picture that cannot be written is a warning only."""
    try:
        write_report(run_dir)
    except (OSError, IpassrError, ValueError) as exc:
        warnings.warn(f"{Path(run_dir) / CURVES}: could not draw the training curves ({exc})",
                      stacklevel=2)


__all__ = ["write_report", "redraw", "read_log", "CURVES", "REDRAW_EVENTS"]
