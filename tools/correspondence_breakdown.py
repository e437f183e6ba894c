"""Where biPAM's matches on Motorcycle are right and wrong: the share within 1 LR pixel (left view,
visible pixels) by ground-truth disparity, by local texture and by image column.

    python tools/correspondence_breakdown.py x2            # the shipped x2 weights
    python tools/correspondence_breakdown.py runs/x4/weights/last.safetensors

Texture is the mean gradient magnitude of the LR left view over a 7x7 window, split into
quartiles over the visible pixels (docs/attention-learning.md has the results).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipassr.correspondence import attention_details, lr_disparity, occlusion_from_disparity  # noqa: E402
from ipassr.datasets import stereo_motorcycle  # noqa: E402
from ipassr.inference import load_model, resolve_weights  # noqa: E402
from ipassr.resize import degrade  # noqa: E402


def share(correct: np.ndarray, where: np.ndarray) -> str:
    return f"{correct[where].mean():.1%} (n={int(where.sum())})" if where.any() else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="a weights file, or x2 / x4 for the shipped ones")
    args = parser.parse_args()
    model = load_model(resolve_weights(args.weights, None))
    scale = model.scale
    hr_left, hr_right, disparity = stereo_motorcycle()
    lr_left, lr_right = degrade(hr_left, scale), degrade(hr_right, scale)
    details = attention_details(model, lr_left, lr_right)
    truth = lr_disparity(disparity, scale)
    estimate = -details.peak_offset_left[0, 0].float().numpy()  # x_left - x_right
    visible = occlusion_from_disparity(truth) & np.isfinite(truth)
    correct = np.abs(estimate - truth) <= 1
    print(f"{args.weights} (x{scale}): {share(correct, visible)} of visible pixels within 1 px")
    for low, high in ((0, 10), (10, 20), (20, 30), (30, 60)):
        print(f"  disparity {low}-{high} LR px: {share(correct, visible & (truth >= low) & (truth < high))}")
    grey = lr_left.mean(axis=2)
    texture = ndimage.uniform_filter(np.hypot(*np.gradient(grey)), 7)
    edges = np.quantile(texture[visible], [0, 0.25, 0.5, 0.75, 1])
    for q in range(4):
        inside = visible & (texture >= edges[q]) & (texture <= edges[q + 1])
        print(f"  texture quartile {q + 1}{' (flattest)' if q == 0 else ''}: {share(correct, inside)}")
    columns = np.broadcast_to(np.arange(truth.shape[1]) / truth.shape[1], truth.shape)
    for low, high in ((0, 0.1), (0.1, 0.9), (0.9, 1.01)):
        print(f"  columns {low:.0%}-{min(high, 1):.0%}: "
              f"{share(correct, visible & (columns >= low) & (columns < high))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
