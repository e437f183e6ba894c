"""Setting a run up: the config of a resumed run, checks of the data, the network, its training
objective and its wrapping; any registered network (``ipassr.models.registry``).

Each check fails before any step runs, with a message that names the file or option at fault.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from ..models.checkpoint import load_into, read_state_dict, transfer_into
from ..errors import IpassrError
from ..data.io import PathLike
from ..models.registry import NetworkSpec, build_from_spec, get_network, size_options
from ..models.training import TrainingObjective, pixel_objective
from .config import FIELDS, LOSS_OPTIONS, TrainConfig, architecture_differences
from .data import PatchSource, open_patches, patch_shape
from .distributed import DistEnv, convert_batchnorm


def resumed_config(saved: TrainConfig, requested: TrainConfig, overrides: set[str] | None,
                   root: Path) -> tuple[TrainConfig, list[str]]:
    """The saved config with the requested values applied (only ``overrides`` when given, else
    every value that differs from the defaults), and the names of what changed; a change of the
    network is refused."""
    requested = absolute_paths(requested)
    keys = overrides if overrides is not None else {
        k for k, v in requested.to_dict().items() if v != TrainConfig().to_dict()[k]}
    keys = set(keys) - {"init_weights"}  # where a run started from cannot change once it has
    changed = {k: getattr(requested, k) for k in keys if getattr(requested, k) != getattr(saved, k)}
    merged = saved.__class__(**{**saved.__dict__, **changed})
    if "scale" in changed and changed["scale"] is None:
        merged = saved.__class__(**{**merged.__dict__, "scale": saved.scale})
    differences = architecture_differences(saved, merged)
    if differences:
        raise IpassrError(f"{root}: cannot resume: the run was trained with a different "
                          f"network ({'; '.join(differences)})")
    return merged, sorted(k for k in changed if k != "scale")


def replaced_init_weights(requested: TrainConfig, overrides: set[str] | None,
                          started_from: str | None) -> str | None:
    """A resumed run continues from its checkpoint, whatever --init-weights says: when that file
    is no longer the one the run started from, the note that says so (a replaced file is easy
    to miss)."""
    path = requested.init_weights
    if path is None or started_from is None or (overrides is not None
                                                 and "init_weights" not in overrides):
        return None
    if Path(path).is_file() and file_sha256(path) != started_from:
        return (f"{path}: not the weights this run started from (they have changed since); the "
                "run continues from its checkpoint: use a new --out to start from this file")
    return None


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of a file: tells whether the init weights a run started from were replaced."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """Paths saved absolute, so a resume or a repeat from another directory finds the files."""
    paths = {k: str(Path(getattr(config, k)).absolute())
             for k in ("patches", "validate", "init_weights") if getattr(config, k) is not None}
    return config.__class__(**{**config.__dict__, **paths})


def open_source(config: TrainConfig) -> PatchSource:
    """The config's patch file, opened."""
    if config.patches is None:
        raise IpassrError("no training data: give --patches FILE (made by `ipassr prepare patches`)")
    return open_patches(config.patches)


def resolve_scale(config: TrainConfig, source: PatchSource) -> TrainConfig:
    """The scale of the patches, which a given --scale must equal."""
    where = getattr(source, "path", "patches")
    if config.scale is not None and config.scale != source.scale:
        raise IpassrError(f"{where}: patches are for x{source.scale} but the run trains "
                          f"x{config.scale} (--scale {config.scale})")
    if config.scale is None:
        return config.__class__(**{**config.__dict__, "scale": source.scale})
    return config


def resolve_network(config: TrainConfig) -> TrainConfig:
    """The config with its network as registered (``arch``) and its size spelled as the spec
    does, the default size when none is given; IpassrError for an unknown network or size."""
    from .recipes import network_size

    spec = get_network(config.arch)
    size = network_size(spec, config.model_size)
    return config.__class__(**{**config.__dict__, "arch": spec.name, "model_size": size})


def check_data(config: TrainConfig, source: PatchSource, world_size: int) -> None:
    """Enough patches for a batch, a crop that fits them, a readable validation root, a batch
    that splits over the processes."""
    where = getattr(source, "path", "patches")
    if len(source) < config.batch_size:
        raise IpassrError(f"{where}: holds {len(source)} patches, fewer than one batch "
                          f"({config.batch_size}); lower --batch-size or add data")
    height, width = patch_shape(source)
    if config.lr_crop is not None and (config.lr_crop[0] > height or config.lr_crop[1] > width):
        raise IpassrError(f"lr_crop {config.lr_crop[0]}x{config.lr_crop[1]} is larger than the "
                          f"{height}x{width} LR patches of {where}")
    if config.validate is not None:
        from ..evaluation.protocol import find_datasets  # evaluation pulls in the inference stack

        if not Path(config.validate).is_dir():
            raise IpassrError(f"--validate {config.validate}: no such folder")
        find_datasets(config.validate, config.scale)  # a bad test root fails now, not after an epoch
    if config.batch_size % world_size:
        raise IpassrError(f"batch size {config.batch_size} cannot be split evenly over "
                          f"{world_size} processes")
    if config.hint_weight < 0:
        raise IpassrError(f"--hint-weight {config.hint_weight}: must be 0 (off) or positive")
    if config.hint_weight > 0 and not getattr(source, "has_hints", False):
        raise IpassrError(f"{where}: holds no disparity hints, which --hint-weight "
                          f"{config.hint_weight} needs (make it with `ipassr prepare patches --hints`)")
    if config.hint_weight > 0 and config.replicate_left:
        raise IpassrError("--hint-weight and --replicate-left do not go together: the hints are "
                          "the real pair's disparities, not a view's against itself")
    if config.hint_weight > 0 and not config.use_attention:
        raise IpassrError("--hint-weight needs biPAM's attention maps; the single-view network "
                          "(--no-attention) has none")


def configure_backends(config: TrainConfig, device: torch.device) -> None:
    """cuDNN autotuning and TF32 as configured (fp32 means fp32 unless asked); determinism."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark and not config.deterministic
        torch.backends.cuda.matmul.allow_tf32 = config.tf32
        torch.backends.cudnn.allow_tf32 = config.tf32
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True


def named_parts(network: nn.Module, parts: str, option: str) -> list[str]:
    """The top-level parts named in ``parts`` ("feature_conv,attention"); a name the network does
    not have is refused, with ``option`` and the network's parts in the message."""
    names = [name.strip() for name in parts.split(",") if name.strip()]
    children = [name for name, _ in network.named_children()]
    unknown = [name for name in names if name not in children]
    if unknown:
        raise IpassrError(f"{option}: no part named {', '.join(unknown)} in this network (its parts: "
                          f"{', '.join(children)})")
    return names


def freeze(network: nn.Module, parts: str) -> None:
    """Stop training the named top-level parts (``config.freeze``): their parameters get no
    gradient, so Adam leaves them as they are (BatchNorm statistics still follow the data)."""
    for name in named_parts(network, parts, "freeze"):
        network.get_submodule(name).requires_grad_(False)


def objective_for(spec: NetworkSpec, config: TrainConfig) -> TrainingObjective:
    """The network's training objective (its spec's ``loss``; else L1/MSE on both views); a loss
    option the objective does not read is refused when set, rather than ignored."""
    objective = spec.loss(config) if spec.loss is not None else pixel_objective(config.loss)
    unused = [k for k in LOSS_OPTIONS if k not in objective.options
              and getattr(config, k) != FIELDS[k].default]
    if unused:
        raise IpassrError(f"{', '.join('--' + k.replace('_', '-') for k in unused)}: "
                          f"{spec.display_name}'s training does not use "
                          f"{'it' if len(unused) == 1 else 'them'}")
    return objective


def new_network(spec: NetworkSpec, config: TrainConfig) -> nn.Module:
    """The network the config describes, as built (train mode): its size's and the config's
    network options passed to the spec's build."""
    options = {**size_options(spec, config.model_size), **config.model_options()}
    try:
        network = build_from_spec(spec, config.scale, options)
    except TypeError as exc:  # an option this network does not take
        given = ", ".join(f"{k}={v}" for k, v in config.model_options().items())
        raise IpassrError(f"{spec.display_name} cannot be built with {given or 'these options'} "
                          f"({exc})") from exc
    return network.train()


def build_network(config: TrainConfig, objective: TrainingObjective, init_weights: PathLike | None,
                  env: DistEnv, device: torch.device) -> tuple[nn.Module, list[str]]:
    """The seeded network as its recipe initialises it, started from ``init_weights`` if given,
    on ``device``; and the names of the tensors that kept their built values (another scale or
    variant: the trunk moves, the rest starts as built)."""
    torch.manual_seed(config.seed)
    network = new_network(get_network(config.arch), config)
    if objective.initialise is not None:
        objective.initialise(network)
    kept: list[str] = []
    if init_weights is not None:
        state, _ = read_state_dict(init_weights)
        shapes = {k: v.shape for k, v in network.state_dict().items()}
        if {k: v.shape for k, v in state.items()} == shapes:
            load_into(network, state, init_weights)
        else:
            kept = transfer_into(network, state, init_weights)
    freeze(network, config.freeze)
    if config.sync_batchnorm and env.distributed:
        network = convert_batchnorm(network, use_cuda=device.type == "cuda")
    network = network.to(device)
    if config.channels_last:
        network = network.to(memory_format=torch.channels_last)
    return network, kept


def wrap(network: nn.Module, config: TrainConfig, env: DistEnv, device: torch.device) -> nn.Module:
    """The module the steps run: DDP under torchrun, ``torch.compile`` if asked."""
    model: nn.Module = network
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not config.loss_sr)  # then some layers may get no loss
    if config.compile:
        model = torch.compile(model)
    return model
