"""Training iPASSR: the paper's recipe by default, resumable, observable, distributed.

| module | what it holds |
| --- | --- |
| ``config`` | ``TrainConfig``: every choice of a run, its TOML/YAML files and presets |
| ``data`` | patch sources, the epoch plan (flips, crops), loaders |
| ``setup`` | a run's config on resume, data checks, the network and its DDP/compile wrapping |
| ``step`` | one step's losses, the device, the learning rate of a step |
| ``validation`` | the evaluation protocol and biPAM's correspondence during training |
| ``run`` | the run folder, its log and its atomic checkpoints |
| ``distributed`` | torchrun processes: who does what, agreement, synchronised BatchNorm |
| ``trainer`` | the ``Trainer`` that puts them together |
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {"TrainConfig": "config", "load_config": "config", "Trainer": "trainer",
            "FitResult": "trainer", "TrainingDiverged": "trainer"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name on first use: ``train.config`` stays torch-free for the CLI's parser."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .config import TrainConfig, load_config
    from .trainer import FitResult, Trainer, TrainingDiverged
