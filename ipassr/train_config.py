"""The training recipe as one flat, typed configuration, saved next to the checkpoints.

Defaults are the paper's recipe (SPEC.md): all five losses with lambda 0.1, Adam (0.9, 0.999),
lr 2e-4 halved every 30 epochs, 80 epochs, batch 36, random horizontal flip with view swap and
vertical flip. Every field can be set from a config file (TOML or YAML, flat ``key = value``) and
from the command line (``--key-name``); precedence: defaults < preset < file < command line.
The resolved configuration is written to ``RUN/config.toml`` so any run can be repeated exactly.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from .errors import IpassrError
from .io import PathLike, atomic_path
from .losses import LossConfig
from .model import ModelConfig

# Keys that define the network's shape or forward pass: a resumed run must not change them.
ARCHITECTURE_KEYS = ("scale", "attention", "whitening", "valid_mask")


@dataclass(frozen=True)
class TrainConfig:
    """Every choice of a training run; the defaults reproduce the paper."""

    # data
    patches: str | None = None  # the .safetensors patch file of `ipassr prepare patches`
    scale: int | None = None  # None: take it from the patch file
    lr_crop: tuple[int, int] | None = None  # (h, w): train on random LR crops of the patches (not paper)
    hflip: bool = True  # p=0.5: flip both views horizontally and swap them
    vflip: bool = True  # p=0.5: flip both views vertically
    replicate_left: bool = False  # Table 1 "replicated inputs": the left view fed as both views
    workers: int = 2  # DataLoader worker processes (0: load in the training process)
    init_weights: str | None = None  # start from these weights (another scale/variant: its trunk)
    # network (Table 1 / Table 3 ablations)
    attention: bool = True  # False: single-input variant, no biPAM
    whitening: bool = True
    valid_mask: bool = True
    # losses (Table 2 ablations)
    loss_sr: bool = True
    loss_photo: bool = True
    loss_smooth: bool = True
    loss_cycle: bool = True
    loss_cons: bool = True
    residual_photo: bool = True
    residual_cycle: bool = True
    residual_cons: bool = True
    loss_weight: float = 0.1
    views: str = "both"  # "left": asymmetric, only the left view is super-resolved and supervised
    # optimisation
    epochs: int = 80
    batch_size: int = 36  # the global batch, whatever the number of processes
    lr: float = 2e-4
    lr_step_epochs: int = 30
    lr_gamma: float = 0.5
    lr_schedule: str = "step"  # step: the paper's (x lr_gamma every lr_step_epochs); cosine (not paper)
    warmup_steps: int = 0  # linear warm-up from 0 over this many steps (not in the paper)
    lr_total_steps: int | None = None  # cosine: the step where lr_min is reached (None: the last)
    lr_decay_from: int = 0  # cosine: constant lr until this step, then the decay (warmup-stable-decay)
    lr_min: float = 0.0  # cosine: the learning rate at the end
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    grad_clip: float | None = None  # max gradient norm (not in the paper)
    seed: int = 0
    # speed (none of these is on by default: each changes rounding, not the maths)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "off"  # off | bf16 (autocast; losses and softmax stay fp32)
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = True
    tf32: bool = False  # allow TF32 matmuls/convolutions on Ampere+ GPUs (faster, less exact)
    deterministic: bool = False
    sync_batchnorm: bool = False  # distributed: BatchNorm statistics over the global batch
    # checkpoints, logging and validation
    checkpoint_every_steps: int = 0  # 0: only at the end of every epoch
    keep_checkpoints: int = 3  # step-numbered checkpoints kept besides last.pt
    log_every_steps: int = 1
    tensorboard: bool = True  # used when the tensorboard package is installed
    validate: str | None = None  # community-layout test root: ROOT/<Dataset>/hr, lr_x{s}
    validate_every_epochs: int = 1
    validate_every_steps: int = 0
    validate_max_scenes: int | None = None  # per dataset; None: all
    validate_correspondence: bool = True  # also score biPAM on Motorcycle's GT disparity (scikit-image)

    def model_config(self) -> ModelConfig:
        """The network this recipe trains (needs ``scale`` resolved)."""
        if self.scale is None:
            raise IpassrError("the scale is not known: give --scale or a patch file")
        return ModelConfig(scale=self.scale, use_attention=self.attention,
                           use_whitening=self.whitening, use_valid_mask=self.valid_mask)

    def loss_config(self) -> LossConfig:
        """The loss terms this recipe uses.

        Asymmetric training (views = left) has no right SR view, and L_cons needs both SR views
        (Y_R = down(|HR_R - SR_R|) is warped onto the left), so it drops L_cons.
        """
        return LossConfig(sr=self.loss_sr, photo=self.loss_photo, smooth=self.loss_smooth,
                          cycle=self.loss_cycle, cons=self.loss_cons and self.views == "both",
                          residual_photo=self.residual_photo, residual_cycle=self.residual_cycle,
                          residual_cons=self.residual_cons, weight=self.loss_weight,
                          views=self.views)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists), suitable for JSON, TOML and ``torch.save``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


FIELDS = {f.name: f for f in fields(TrainConfig)}

PRESETS: dict[str, dict[str, Any]] = {
    # A couple of minutes on 2 CPU cores: small crops, small batch, a few epochs, visible progress.
    "smoke": {"batch_size": 4, "lr_crop": (24, 48), "epochs": 3, "lr": 5e-4, "lr_step_epochs": 2,
              "workers": 0, "checkpoint_every_steps": 25, "validate_max_scenes": 2},
    "paper": {},
}


def _type_name(name: str) -> str:
    return str(FIELDS[name].type).replace("tuple[int, int]", "[h, w]")


def _coerce(name: str, value: Any, origin: str) -> Any:
    """Check and convert one value to the type of field ``name``; IpassrError naming ``origin``."""
    kind = str(FIELDS[name].type)
    optional = "None" in kind
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise IpassrError(f"{origin}: '{name}' cannot be empty (expected {_type_name(name)})")
    try:
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                return value.lower() in ("true", "yes", "on", "1")
            raise ValueError
        if kind.startswith("tuple"):
            if isinstance(value, str):
                value = value.replace("x", ",").split(",")
            pair = tuple(int(v) for v in value)
            if len(pair) != 2 or min(pair) < 1:
                raise ValueError
            return pair
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if kind.startswith("str"):
            if not isinstance(value, (str, Path)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        pass
    raise IpassrError(f"{origin}: '{name}' must be {_type_name(name)}, got {value!r}")


def _check_values(config: TrainConfig, origin: str) -> None:
    """Range checks that types alone do not catch."""
    problems = []
    if config.scale is not None and config.scale < 1:
        problems.append(f"scale must be >= 1 (got {config.scale})")
    for name in ("epochs", "batch_size", "lr_step_epochs", "log_every_steps", "validate_every_epochs"):
        if getattr(config, name) < 1:
            problems.append(f"{name} must be >= 1 (got {getattr(config, name)})")
    for name in ("workers", "checkpoint_every_steps", "keep_checkpoints", "validate_every_steps",
                 "warmup_steps", "lr_decay_from"):
        if getattr(config, name) < 0:
            problems.append(f"{name} must be >= 0 (got {getattr(config, name)})")
    if config.lr <= 0:
        problems.append(f"lr must be > 0 (got {config.lr})")
    if not 0 <= config.lr_min <= config.lr:
        problems.append(f"lr_min must be in 0..lr (got {config.lr_min})")
    if config.lr_schedule not in ("step", "cosine"):
        problems.append(f"lr_schedule must be 'step' or 'cosine' (got {config.lr_schedule!r})")
    if config.lr_total_steps is not None and config.lr_total_steps <= config.lr_decay_from:
        problems.append(f"lr_total_steps ({config.lr_total_steps}) must come after "
                        f"lr_decay_from ({config.lr_decay_from})")
    if config.views not in ("both", "left"):
        problems.append(f"views must be 'both' or 'left' (got {config.views!r})")
    if config.amp not in ("off", "bf16"):
        problems.append(f"amp must be 'off' or 'bf16' (got {config.amp!r})")
    if not (config.device in ("auto", "cpu", "cuda") or config.device.startswith("cuda:")):
        problems.append(f"device must be auto, cpu, cuda or cuda:N (got {config.device!r})")
    if config.replicate_left and config.views == "left":
        problems.append("replicate_left and views='left' exclude each other")
    if not config.attention and config.views == "left":
        problems.append("views='left' (asymmetric) needs the attention module (attention = true)")
    if problems:
        raise IpassrError(f"{origin}: " + "; ".join(problems))


def apply_overrides(config: TrainConfig, values: Mapping[str, Any], origin: str) -> TrainConfig:
    """``config`` with ``values`` applied; unknown keys and bad values raise IpassrError naming them."""
    unknown = [k for k in values if k not in FIELDS]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise IpassrError(f"{origin}: unknown config key {', '.join(hints)}")
    updated = replace(config, **{k: _coerce(k, v, origin) for k, v in values.items()})
    _check_values(updated, origin)
    return updated


def read_config_file(path: PathLike) -> dict[str, Any]:
    """Read a flat TOML (.toml) or YAML (.yaml/.yml) config file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise IpassrError(f"{path}: no such config file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as exc:
                raise IpassrError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), "
                                  "or use a .toml config") from exc
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle) or {}
        else:
            raise IpassrError(f"{path}: unknown config format '{suffix}' (use .toml or .yaml)")
    except IpassrError:
        raise
    except Exception as exc:  # tomllib / yaml parse errors
        raise IpassrError(f"{path}: not a valid config file ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise IpassrError(f"{path}: a config file must hold key = value pairs")
    nested = [k for k, v in data.items() if isinstance(v, dict)]
    if nested:
        raise IpassrError(f"{path}: sections are not supported (found {', '.join(nested)}); "
                          "use flat key = value pairs")
    return data


def load_config(path: PathLike, base: TrainConfig | None = None) -> TrainConfig:
    """A TrainConfig from a config file, on top of ``base`` (defaults when None)."""
    return apply_overrides(base or TrainConfig(), read_config_file(path), str(path))


def preset_config(name: str) -> TrainConfig:
    """The defaults with preset ``name`` applied."""
    if name not in PRESETS:
        raise IpassrError(f"unknown preset '{name}' (choose from {', '.join(PRESETS)})")
    return apply_overrides(TrainConfig(), PRESETS[name], f"preset {name}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def config_to_toml(config: TrainConfig) -> str:
    """TOML text of the config; unset (None) optional keys are written as comments."""
    lines = ["# ipassr training configuration (ipassr train --config this-file)"]
    for key, value in config.to_dict().items():
        lines.append(f"# {key} = (unset)" if value is None else f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def save_config(config: TrainConfig, path: PathLike) -> None:
    """Write the config as TOML, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(config_to_toml(config), encoding="utf-8")


def config_from_dict(values: Mapping[str, Any], origin: str = "checkpoint") -> TrainConfig:
    """Rebuild a TrainConfig saved with ``to_dict`` (e.g. inside a checkpoint)."""
    return apply_overrides(TrainConfig(), dict(values), origin)


def architecture_differences(old: TrainConfig, new: TrainConfig) -> list[str]:
    """'key: old -> new' for every architecture key that differs."""
    return [f"{k}: {getattr(old, k)} -> {getattr(new, k)}" for k in ARCHITECTURE_KEYS
            if getattr(old, k) != getattr(new, k)]


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '10m', '1.5h' (for --time-limit)."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    text = str(text).strip().lower()
    try:
        if text and text[-1] in units:
            seconds = float(text[:-1]) * units[text[-1]]
        else:
            seconds = float(text)
    except ValueError:
        raise IpassrError(f"bad duration {text!r} (use e.g. 600, 600s, 10m or 1.5h)") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise IpassrError(f"bad duration {text!r}: must be positive")
    return seconds
