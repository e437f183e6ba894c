"""The smoke preset's validation: a crop of Middlebury Motorcycle (scikit-image) as a test root.

A smoke run trains on patches of the same pair, so its validation is a check that training
works and that ``best.safetensors`` is the best of the run on a real image, not a score.
"""

from __future__ import annotations

from pathlib import Path

from ..data.datasets import stereo_motorcycle
from ..data.io import write_image
from ..data.resize import degrade

DATASET = "Motorcycle-crop"
HR_CROP = (slice(160, 288), slice(240, 496))  # 128x256 HR px of the motorcycle, a multiple of 4
SCALES = (2, 4)


def smoke_validation_root(folder: Path) -> Path:
    """Write FOLDER/Motorcycle-crop/{hr, lr_x2, lr_x4}/motorcycle/ (the community layout that
    ``--validate`` reads; LR by MATLAB-exact bicubic); return FOLDER."""
    views = stereo_motorcycle("pass --validate ROOT")[:2]
    scene = folder / DATASET
    for index, view in enumerate(views):
        hr = view[HR_CROP]
        write_image(scene / "hr" / "motorcycle" / f"hr{index}.png", hr)
        for scale in SCALES:
            write_image(scene / f"lr_x{scale}" / "motorcycle" / f"lr{index}.png",
                        degrade(hr, scale))
    return folder


__all__ = ["smoke_validation_root", "DATASET"]
