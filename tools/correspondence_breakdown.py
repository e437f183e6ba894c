"""Where biPAM's matches on Motorcycle are right and wrong: the share within 1 LR pixel (left view,
visible pixels) by ground-truth disparity, by local texture and by image column.

    python tools/correspondence_breakdown.py x2            # the shipped x2 weights
    python tools/correspondence_breakdown.py runs/x4/weights/last.safetensors
    python tools/correspondence_breakdown.py runs/x4/checkpoints/step-00000300.pt --scale 2

--scale scores a network's matches at another scale (an x4 run's biPAM at x2, as the shipped x2
weights use it): its feature extraction and biPAM go into a network of that scale, whose other
parts stay as built; the matches depend on nothing else. A training checkpoint (.pt) works too.

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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/graft.py, also under runpy

from dataclasses import replace  # noqa: E402

from ipassr.models.checkpoint import load_network  # noqa: E402
from ipassr.evaluation.correspondence import attention_details, lr_disparity, occlusion_from_disparity  # noqa: E402
from ipassr.data.datasets import stereo_motorcycle  # noqa: E402
from ipassr.inference.api import StereoSR, resolve_weights  # noqa: E402
from ipassr.models.ipassr import IPASSR  # noqa: E402
from ipassr.data.resize import degrade  # noqa: E402
from graft import graft  # noqa: E402

MATCHING_PARTS = ("feature_conv", "feature_group", "attention")  # all that biPAM's maps depend on


def share(correct: np.ndarray, where: np.ndarray) -> str:
    return f"{correct[where].mean():.1%} (n={int(where.sum())})" if where.any() else "-"


def matching_parts_at_scale(network: IPASSR, scale: int) -> IPASSR:
    """A network of ``scale`` with ``network``'s feature extraction and biPAM (the rest as built)."""
    if network.attention is None:
        raise SystemExit("these weights have no biPAM (a single-view network): nothing to score")
    moved = IPASSR.from_config(replace(network.config, scale=scale))
    graft(moved, network.state_dict(), MATCHING_PARTS)
    return moved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="a weights file or training checkpoint, or x2 / x4 for "
                                        "the shipped ones")
    parser.add_argument("--scale", type=int, choices=(2, 4),
                        help="score the matches at this scale (default: the network's own)")
    args = parser.parse_args()
    network = load_network(resolve_weights(args.weights, None))
    if args.scale is not None and args.scale != network.scale:
        network = matching_parts_at_scale(network, args.scale)
    model = StereoSR(network)
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
