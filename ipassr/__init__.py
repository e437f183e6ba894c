"""ipassr: iPASSR stereo image super-resolution (Wang et al., CVPRW 2021).

>>> import ipassr
>>> model = ipassr.load_model("weights.pth.tar")          # or load_model(scale=4): shipped weights
>>> sr_left, sr_right = model.super_resolve(left, right)    # PIL images, arrays or tensors

The names below are imported on first use, so ``import ipassr`` (and the CLI's start) does not
import torch: the ``ipassr`` command sets torch's allocator options before torch loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "AttentionMaps": "attention", "load_network": "checkpoint", "save_weights": "checkpoint",
    "open_dataset": "datasets", "CheckpointError": "errors", "ImageReadError": "errors",
    "IpassrError": "errors", "StereoSR": "inference", "load_model": "inference",
    "weights_path": "inference",
    "read_image": "io", "write_image": "io", "LossConfig": "losses", "ipassr_loss": "losses",
    "psnr": "metrics", "score_pair": "metrics", "ssim": "metrics", "IPASSR": "model",
    "ModelConfig": "model", "count_parameters": "model", "PatchFile": "patches",
    "imresize": "resize", "imresize_tensor": "resize", "plan_inference": "fast",
    "stereo_forward": "fast", "TrainConfig": "train", "Trainer": "train",
    "visualize_pair": "visualize",
}
_SUBMODULES = {
    "attention", "checkpoint", "cli", "commands", "correspondence", "datasets", "demo",
    "devices", "disparity", "disparity_benefit", "errors", "evaluation", "export", "fast",
    "inference", "io", "losses", "metrics", "model", "network_names", "patches", "resize", "sizes",
    "startup", "train", "visualize", "zoo",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule) on first access."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .attention import AttentionMaps
    from .checkpoint import load_network, save_weights
    from .datasets import open_dataset
    from .errors import CheckpointError, ImageReadError, IpassrError
    from .inference import StereoSR, load_model, weights_path
    from .io import read_image, write_image
    from .losses import LossConfig, ipassr_loss
    from .metrics import psnr, score_pair, ssim
    from .model import IPASSR, ModelConfig, count_parameters
    from .patches import PatchFile
    from .resize import imresize, imresize_tensor
    from .fast import plan_inference, stereo_forward
    from .train import TrainConfig, Trainer
    from .visualize import visualize_pair
