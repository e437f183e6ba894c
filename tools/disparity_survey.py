"""Disparity range of stereo pairs (OpenCV SGBM on the HR pair, large pairs measured at half or
quarter size and scaled back), to compare with the 90-column LR training patch.

    python tools/disparity_survey.py ../shared/data/eth3d/two_view_training ../shared/data/stereo-extra
prints one JSON line per pair: size, SGBM density, 5th/50th/95th percentile disparity (HR pixels).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from ipassr.data.datasets import open_dataset, read_pair
from ipassr.data.disparity import require_opencv


def survey(left: np.ndarray, right: np.ndarray) -> dict:
    cv2 = require_opencv()
    factor = 1
    while left.shape[1] / factor > 800:
        factor *= 2
    size = (left.shape[1] // factor, left.shape[0] // factor)
    small = [cv2.resize(v, size, interpolation=cv2.INTER_AREA)[:, :, ::-1].copy()
             for v in (left, right)]
    span = 16 * int(np.ceil(size[0] / 3 / 16))
    matcher = cv2.StereoSGBM_create(0, span, 5, P1=8 * 3 * 25, P2=32 * 3 * 25, disp12MaxDiff=1,
                                    uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
                                    mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    disparity = matcher.compute(*small).astype(np.float32) / 16
    found = disparity[disparity > 0] * factor
    p5, p50, p95 = (np.percentile(found, [5, 50, 95]) if found.size else (None,) * 3)
    return {"width": left.shape[1], "height": left.shape[0],
            "density": round(float((disparity > 0).mean()), 3),
            "p5": p5 and round(float(p5), 1), "p50": p50 and round(float(p50), 1),
            "p95": p95 and round(float(p95), 1)}


def main(roots: list[str]) -> int:
    for root in roots:
        for pair in open_dataset(root).pairs:
            print(json.dumps({"source": root, "pair": pair.name, **survey(*read_pair(pair))}),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
