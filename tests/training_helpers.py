"""Shared helpers of the training tests: tiny patch files cut from real stereo pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from ipassr.data.io import read_image
from ipassr.data.patches import extract_patches

from conftest import CONFORMANCE, DATA

CONES = DATA / "middlebury" / "2003" / "Cones"

# Small enough for 2 shared CPU cores: LR crops of 10x20, batch 2.
TINY = {"batch_size": 2, "lr_crop": (10, 20), "workers": 0, "tensorboard": False}


def cones_patches(scale: int) -> tuple[np.ndarray, ...]:
    """The paper's 30x90 training patches of the real Middlebury Cones pair (56 at x2)."""
    return extract_patches(read_image(CONES / "im2.png"), read_image(CONES / "im6.png"), scale)


def write_patch_file(path: Path, arrays: tuple[np.ndarray, ...], scale: int,
                     count: int | None = None) -> Path:
    """A patch file following the ``ipassr-patches`` contract, from the first ``count`` patches."""
    names = ("lr_left", "lr_right", "hr_left", "hr_right")
    tensors = {n: np.ascontiguousarray(a[:count]) for n, a in zip(names, arrays)}
    n = tensors["lr_left"].shape[0]
    save_file(tensors, str(path), metadata={
        "format": "ipassr-patches", "version": "1", "scale": str(scale), "lr_patch_height": "30",
        "lr_patch_width": "90", "sources": json.dumps({"cones": n})})
    return path


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a CPU shared with other jobs, spinning OpenMP threads can make a
    training step ~50x slower (measured: 0.17 s with 1 thread, 11.5 s with 2 on a loaded 2-core box)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
