"""ipassr: iPASSR stereo image super-resolution (Wang et al., CVPRW 2021).

>>> import ipassr
>>> model = ipassr.load_model("weights.pth.tar")          # or load_model(scale=4): shipped weights
>>> sr_left, sr_right = model.super_resolve(left, right)    # PIL images, arrays or tensors
>>> ipassr.register_network(ipassr.NetworkSpec(name="mine", build=build))  # docs/networks.md

The names below are imported on first use, so ``import ipassr`` (and the CLI's start) does not
import torch: the ``ipassr`` command sets torch's allocator options before torch loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "AttentionMaps": "models.bipam", "load_network": "models.checkpoint",
    "save_weights": "models.checkpoint", "open_dataset": "data.datasets",
    "CheckpointError": "errors", "ImageReadError": "errors", "IpassrError": "errors",
    "StereoSR": "inference.api", "load_model": "inference.api", "weights_path": "inference.api",
    "read_image": "data.io", "write_image": "data.io", "LossConfig": "models.losses",
    "ipassr_loss": "models.losses", "psnr": "evaluation.metrics", "score_pair": "evaluation.metrics",
    "ssim": "evaluation.metrics", "IPASSR": "models.ipassr", "ModelConfig": "models.ipassr",
    "count_parameters": "models.ipassr", "PatchFile": "data.patches", "imresize": "data.resize",
    "imresize_tensor": "data.resize", "plan_inference": "inference.fast",
    "stereo_forward": "inference.fast", "TrainConfig": "train", "Trainer": "train",
    "visualize_pair": "visualize", "NetworkSpec": "models.registry",
    "register_network": "models.registry", "registered_networks": "models.registry",
    "build_network": "models.registry",
}
_SUBMODULES = {
    "cli", "commands", "data", "demo", "devices", "errors", "evaluation", "inference", "models",
    "sizes", "startup", "train", "visualize",
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
    from .models.bipam import AttentionMaps
    from .models.checkpoint import load_network, save_weights
    from .data.datasets import open_dataset
    from .errors import CheckpointError, ImageReadError, IpassrError
    from .inference.api import StereoSR, load_model, weights_path
    from .data.io import read_image, write_image
    from .models.losses import LossConfig, ipassr_loss
    from .evaluation.metrics import psnr, score_pair, ssim
    from .models.ipassr import IPASSR, ModelConfig, count_parameters
    from .data.patches import PatchFile
    from .data.resize import imresize, imresize_tensor
    from .inference.fast import plan_inference, stereo_forward
    from .train import TrainConfig, Trainer
    from .visualize import visualize_pair
    from .models.registry import (NetworkSpec, build_network, register_network,
                                  registered_networks)
