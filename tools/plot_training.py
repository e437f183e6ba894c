"""Plot training curves (loss, validation PSNR per scale, biPAM's correspondence) from ``ipassr train`` logs.

Usage: python tools/plot_training.py OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...]
Needs matplotlib (a documentation tool, not a dependency of ipassr).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def read_log(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """The step records and the validation records of one run's log.jsonl."""
    steps, validations = [], []
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "step":
            steps.append(record)
        elif record.get("event") == "validation":
            validations.append(record)
    return steps, validations


def smooth(values: np.ndarray, window: int = 25) -> np.ndarray:
    """Running mean over ``window`` steps (shorter at the start)."""
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    index = np.arange(1, len(values) + 1)
    start = np.maximum(index - window, 0)
    return (cumulative[index] - cumulative[start]) / (index - start)


def validation_psnr(record: dict) -> float | None:
    """Mean (Left+Right)/2 PSNR over the validation datasets of one record."""
    values = [d["stereo_psnr"] for d in record.get("val", {}).values()
              if isinstance(d, dict) and "stereo_psnr" in d]
    return float(np.mean(values)) if values else None


def run_scale(run_dir: Path) -> str:
    """The run's scale as written in its config.toml ('?' when absent)."""
    for line in (run_dir / "config.toml").read_text().splitlines():
        if line.startswith("scale ="):
            return line.split("=", 1)[1].strip()
    return "?"


def main(argv: list[str]) -> int:
    usage = __doc__.splitlines()[2]
    if len(argv) < 2 or argv[0].startswith("-") or not all("=" in a for a in argv[1:]):
        print(usage, file=sys.stderr)
        return 2
    output, runs = Path(argv[0]), [(label, Path(run)) for label, run in
                                   (a.split("=", 1) for a in argv[1:])]
    missing = [str(run) for _, run in runs if not (run / "log.jsonl").is_file()]
    if missing:
        print(f"no log.jsonl in {', '.join(missing)} (a run folder of ipassr train)\n{usage}",
              file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted({run_scale(run) for _, run in runs})  # one PSNR panel per scale
    figure, axes = plt.subplots(1, 2 + len(scales), figsize=(5.3 * (2 + len(scales)), 4))
    loss_axis, match_axis, psnr_axes = axes[0], axes[-1], dict(zip(scales, axes[1:-1]))
    for index, (label, run) in enumerate(runs):
        color = f"C{index}"
        steps, validations = read_log(run)
        x = np.array([s["global_step"] for s in steps])
        loss_axis.plot(x, smooth(np.array([s["loss"]["total"] for s in steps])), label=label,
                       color=color)
        points = [(v["global_step"], validation_psnr(v)) for v in validations]
        points = [(s, p) for s, p in points if p is not None]
        if points:
            psnr_axes[run_scale(run)].plot(*zip(*points), marker="o", label=label, color=color)
        matches = [(v["global_step"], 100 * v["correspondence"]["within_1px"])
                   for v in validations if v.get("correspondence")]
        if matches:
            match_axis.plot(*zip(*matches), marker="o", label=label, color=color)
    loss_axis.set(xlabel="step", ylabel="total loss (running mean of 25 steps)", yscale="log")
    for scale, axis in psnr_axes.items():
        axis.set(xlabel="step", ylabel=f"x{scale} validation (Left+Right)/2 PSNR (dB)")
    match_axis.set(xlabel="step", ylabel="Motorcycle matches within 1 LR px (%)")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(output, dpi=90)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
