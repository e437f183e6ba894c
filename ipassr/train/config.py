"""The training recipe as one flat, typed configuration, saved next to the checkpoints.

Defaults are iPASSR's paper recipe (Sec. 4.1): all five losses with lambda 0.1, Adam (0.9, 0.999),
lr 2e-4 halved every 30 epochs, 80 epochs, batch 36, random horizontal flip with view swap and
vertical flip; another network starts from its published recipe (``ipassr.train.recipes``).
Every field can be set from a config file (TOML or YAML, flat ``key = value``) and from the
command line (``--key-name``); precedence: defaults < network recipe < preset < file < command
line. The network's options carry ``ModelConfig``'s names (``use_attention``, ...). The resolved
configuration is written to ``RUN/config.toml`` so any run can be repeated exactly.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import math
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from ..errors import IpassrError
from ..data.io import PathLike, atomic_path
from ..models.configs import ModelConfig  # torch-free: `ipassr train --help`

# ModelConfig's fields a TrainConfig sets, under the same names (passed to the network's build)
MODEL_OPTIONS = tuple(f.name for f in fields(ModelConfig) if f.name != "scale")
# Keys that define the network's shape or forward pass: a resumed run must not change them.
ARCHITECTURE_KEYS = ("arch", "model_size", "scale") + MODEL_OPTIONS
# Loss options: each network's training objective reads some (TrainingObjective.options)
LOSS_OPTIONS = ("loss", "loss_sr", "loss_photo", "loss_smooth", "loss_cycle", "loss_cons",
                "residual_photo", "residual_cycle", "residual_cons", "loss_weight", "hint_weight",
                "views", "drop_path_rate")
# Names of earlier versions, still read from config files and checkpoints
RENAMED = {"attention": "use_attention", "whitening": "use_whitening", "valid_mask": "use_valid_mask"}
# --amp spellings -> whether the steps run under bfloat16 autocast (inference's --dtype names too)
AUTOCAST = {"off": False, "float32": False, "bf16": True, "bfloat16": True}


def option(default: Any, help: str) -> Any:
    """A TrainConfig field with its help text (the CLI option and the docs read it from here)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """Every choice of a training run; the defaults reproduce iPASSR's paper."""

    # network
    arch: str = option("ipassr", "the network: ipassr, nafssr, passrnet or a plugin's name; its "
                                 "published recipe is the default (recipes/)")
    model_size: str | None = option(None, "the network's size (NAFSSR: T, S, B or L; default: "
                                          "the network's)")
    # data
    patches: str | None = option(None, "patch file (.safetensors) made by `ipassr prepare patches`")
    scale: int | None = option(None, "upscaling factor (default: the patch file's)")
    lr_crop: tuple[int, int] | None = option(
        None, "train on random HxW crops of the LR patches, e.g. 24x48 (not in the paper)")
    hflip: bool = option(True, "p=0.5: flip both views horizontally and swap them (paper: on)")
    hflip_swap: bool = option(True, "swap the views when flipping (iPASSR, NAFSSR); PASSRnet's "
                                    "recipe flips without swapping")
    vflip: bool = option(True, "p=0.5: flip both views vertically (paper: on)")
    channel_shuffle: bool = option(False, "a random order of the RGB channels, the same for "
                                          "every view (NAFSSR's recipe)")
    replicate_left: bool = option(False, "Table 1 'replicated inputs': the left view fed as both "
                                         "views")
    workers: int = option(2, "DataLoader worker processes (0: load in the training process)")
    init_weights: str | None = option(
        None, "start a new run from these weights (any format `ipassr infer` reads; another "
              "scale or the single-view variant gives its trunk); ignored on resume")
    freeze: str = option(
        "", "comma-separated parts of the network not to train, e.g. feature_conv,feature_group,"
            "attention (keeps a correspondence learned elsewhere; not in the paper)")
    # iPASSR's variants (Table 1 / Table 3 ablations): ModelConfig's fields
    use_attention: bool = option(True, "biPAM; --no-attention = single-input variant (Table 1)")
    use_whitening: bool = option(True, "whitening of Q and K (Table 3)")
    use_valid_mask: bool = option(True, "valid masks in the network and losses (Table 3)")
    channels: int = option(64, "features per pixel (the paper's 64)")
    drop_path_rate: float = option(0.0, "NAFSSR: skip each block with this probability in "
                                        "training (its recipes: T 0, S 0.1, B 0.2, L 0.3)")
    # losses (Table 2 ablations)
    loss: str = option("l1", "the SR loss of networks other than iPASSR: l1 or mse (the NAFSSR "
                             "and PASSRnet recipes: mse)")
    loss_sr: bool = option(True, "L_SR (eq. 9)")
    loss_photo: bool = option(True, "L_photo, the photometric loss (eq. 10)")
    loss_smooth: bool = option(True, "L_smooth, the smoothness loss (eq. 11)")
    loss_cycle: bool = option(True, "L_cycle, the cycle loss (eq. 12)")
    loss_cons: bool = option(True, "L_cons, the consistency loss (eq. 14)")
    residual_photo: bool = option(True, "L_photo on residual images (Table 2)")
    residual_cycle: bool = option(True, "L_cycle on residual images (Table 2)")
    residual_cons: bool = option(True, "L_cons on residual images (Table 2)")
    loss_weight: float = option(0.1, "weight of the stereo losses (paper: 0.1; PASSRnet: 0.005)")
    hint_weight: float = option(
        0.0, "weight of the attention-hint loss: biPAM's maps pulled toward the SGBM disparities "
             "stored by `prepare patches --hints` (not in the paper; 0 = off)")
    views: str = option("both", "both, or left = asymmetric: only the left view super-resolved "
                                "and supervised")
    # optimisation
    epochs: int = option(80, "epochs (paper: 80)")
    total_steps: int | None = option(None, "the run's length in steps, instead of epochs "
                                           "(BasicSR's total_iter)")
    optimizer: str = option("adam", "adam (the paper's) or adamw (NAFSSR's)")
    batch_size: int = option(36, "the global batch, split over processes (paper: 36)")
    lr: float = option(2e-4, "initial learning rate (paper: 2e-4)")
    lr_step_epochs: int = option(30, "step schedule: x lr_gamma every N epochs (paper: 30)")
    lr_gamma: float = option(0.5, "step schedule: the factor (paper: 0.5)")
    lr_schedule: str = option("step", "step (the paper's) or cosine (per step, from lr down to "
                                      "lr_min; not in the paper)")
    warmup_steps: int = option(0, "raise the learning rate linearly from 0 over N steps first")
    lr_total_steps: int | None = option(
        None, "cosine: the step at which lr reaches lr_min (default: the last step)")
    lr_decay_from: int = option(0, "cosine: keep lr constant until this step, then decay "
                                   "(warmup-stable-decay, e.g. on --resume)")
    lr_min: float = option(0.0, "cosine: the final learning rate")
    adam_beta1: float = option(0.9, "Adam(W) beta1 (paper: 0.9)")
    adam_beta2: float = option(0.999, "Adam(W) beta2 (paper: 0.999; NAFSSR: 0.9)")
    adam_eps: float = option(1e-8, "Adam(W) epsilon")
    weight_decay: float = option(0.0, "weight decay (AdamW's decoupled one; Adam's L2)")
    grad_clip: float | None = option(None, "clip the gradient norm to this (not in the paper)")
    seed: int = option(0, "seed of the initialisation, data order and flips")
    # speed (none of these is on by default: each changes rounding, not the maths)
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    amp: str = option("off", "autocast precision, spelled as inference's --dtype: off (= float32), "
                             "or bfloat16 (= bf16; losses and softmax stay fp32)")
    channels_last: bool = option(False, "channels_last memory format (faster on CPUs)")
    compile: bool = option(False, "torch.compile the network")
    cudnn_benchmark: bool = option(True, "cuDNN autotuning on a GPU")
    tf32: bool = option(False, "allow TF32 on Ampere+ GPUs (faster fp32 convolutions, about "
                               "1e-3 relative error)")
    deterministic: bool = option(False, "deterministic algorithms (slower)")
    sync_batchnorm: bool = option(False, "BatchNorm statistics over the global batch when "
                                         "distributed")
    # checkpoints, logging and validation
    checkpoint_every_steps: int = option(0, "also checkpoint every N steps (0: only each epoch)")
    keep_checkpoints: int = option(3, "step-numbered checkpoints kept besides last.pt")
    log_every_steps: int = option(1, "write a log record every N steps")
    tensorboard: bool = option(True, "TensorBoard scalars too (needs the tensorboard package)")
    validate: str | None = option(None, "community-layout test root (ROOT/<Dataset>/hr, "
                                        "lr_x<s>) to validate on")
    validate_every_epochs: int = option(1, "validate every N epochs")
    validate_every_steps: int = option(0, "also validate every N steps (0: never)")
    validate_max_scenes: int | None = option(None, "validate on at most N scenes per dataset")
    validate_correspondence: bool = option(
        True, "also score biPAM's matches on Motorcycle's GT disparity (scikit-image)")

    @property
    def autocast(self) -> bool:
        """Whether the steps run under bfloat16 autocast."""
        return AUTOCAST[self.amp]

    def model_options(self) -> dict[str, Any]:
        """The network options this config sets (``MODEL_OPTIONS`` away from their defaults),
        for the network's build."""
        return {k: getattr(self, k) for k in MODEL_OPTIONS if getattr(self, k) != FIELDS[k].default}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists), suitable for JSON, TOML and ``torch.save``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


FIELDS = {f.name: f for f in fields(TrainConfig)}

PRESETS: dict[str, dict[str, Any]] = {
    # A couple of minutes on 2 CPU cores: small crops, small batch, a few epochs, visible progress.
    # Any network: its recipe's length in steps and schedule end give way to the 3 epochs.
    # TensorBoard only where the install has it (the README's install does not): no warning.
    "smoke": {"batch_size": 4, "lr_crop": (24, 48), "epochs": 3, "lr": 5e-4, "lr_step_epochs": 2,
              "workers": 0, "checkpoint_every_steps": 25, "validate_max_scenes": 2,
              "total_steps": None, "lr_total_steps": None,
              "tensorboard": importlib.util.find_spec("tensorboard") is not None},
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
    for name in ("epochs", "batch_size", "lr_step_epochs", "log_every_steps", "validate_every_epochs",
                 "channels"):
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
    if config.total_steps is not None and config.total_steps < 1:
        problems.append(f"total_steps must be >= 1 (got {config.total_steps})")
    if not 0 <= config.drop_path_rate < 1:
        problems.append(f"drop_path_rate must be in [0, 1) (got {config.drop_path_rate})")
    if config.weight_decay < 0:
        problems.append(f"weight_decay must be >= 0 (got {config.weight_decay})")
    for name, choices in (("optimizer", ("adam", "adamw")), ("loss", ("l1", "mse"))):
        if getattr(config, name) not in choices:
            problems.append(f"{name} must be {' or '.join(map(repr, choices))} "
                            f"(got {getattr(config, name)!r})")
    if config.lr_schedule not in ("step", "cosine"):
        problems.append(f"lr_schedule must be 'step' or 'cosine' (got {config.lr_schedule!r})")
    if config.lr_total_steps is not None and config.lr_total_steps <= config.lr_decay_from:
        problems.append(f"lr_total_steps ({config.lr_total_steps}) must come after "
                        f"lr_decay_from ({config.lr_decay_from})")
    if config.views not in ("both", "left"):
        problems.append(f"views must be 'both' or 'left' (got {config.views!r})")
    if config.amp not in AUTOCAST:
        problems.append(f"amp must be one of {', '.join(AUTOCAST)} (got {config.amp!r})"
                        + ("; float16 would need loss scaling, which ipassr does not do"
                           if config.amp in ("float16", "fp16") else ""))
    if not (config.device in ("auto", "cpu", "cuda") or config.device.startswith("cuda:")):
        problems.append(f"device must be auto, cpu, cuda or cuda:N (got {config.device!r})")
    if config.replicate_left and config.views == "left":
        problems.append("replicate_left and views='left' exclude each other")
    if not config.use_attention and config.views == "left":
        problems.append("views='left' (asymmetric) needs the attention module "
                        "(use_attention = true)")
    if problems:
        raise IpassrError(f"{origin}: " + "; ".join(problems))


def apply_overrides(config: TrainConfig, values: Mapping[str, Any], origin: str) -> TrainConfig:
    """``config`` with ``values`` applied; unknown keys and bad values raise IpassrError naming
    them. Keys of earlier versions (``RENAMED``) are read under their new names."""
    values = {RENAMED.get(k, k): v for k, v in values.items()}
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
