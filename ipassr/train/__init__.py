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

from .config import TrainConfig, load_config
from .trainer import FitResult, Trainer, TrainingDiverged

__all__ = ["TrainConfig", "Trainer", "FitResult", "TrainingDiverged", "load_config"]
