"""Loading and saving weights safely.

Reads the reference implementation's checkpoints (``{"epoch", "state_dict"}`` with its parameter
names), plain state dicts, training checkpoints (``{"model": ...}``) and our own safetensors files.
Nothing is ever unpickled beyond tensors (``torch.load(weights_only=True)``): a checkpoint is
untrusted input. Loads are strict: a missing, unexpected or misshapen tensor is an error.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError
from ..data.io import PathLike, atomic_path
from .ipassr import ARCHITECTURE, IPASSR, ModelConfig
from .zoo import ARCHITECTURES, NAMES, build_network, detect_architecture, to_our_names

WEIGHTS_FORMAT = "ipassr-weights"

# Reference parameter names -> ours (prefix rewrites, applied in order, first match wins).
_REFERENCE_TO_OURS: list[tuple[str, str]] = [
    (r"^init_feature\.", "feature_conv."),
    (r"^deep_feature\.RDB\.(\d+)\.conv\.(\d+)\.conv\.", r"feature_group.blocks.\1.layers.\2.conv."),
    (r"^deep_feature\.RDB\.(\d+)\.LFF\.", r"feature_group.blocks.\1.fuse."),
    (r"^deep_feature\.conv\.", "feature_group.fuse."),
    (r"^reconstruct\.RDB\.(\d+)\.conv\.(\d+)\.conv\.",
     r"reconstruction_group.blocks.\1.layers.\2.conv."),
    (r"^reconstruct\.RDB\.(\d+)\.LFF\.", r"reconstruction_group.blocks.\1.fuse."),
    (r"^reconstruct\.conv\.", "reconstruction_group.fuse."),
    (r"^pam\.bq\.", "attention.query."),
    (r"^pam\.bs\.", "attention.key."),
    (r"^pam\.rb\.body\.0\.", "attention.transition.conv1."),
    (r"^pam\.rb\.body\.2\.", "attention.transition.conv2."),
    (r"^pam\.bn\.", "attention.norm."),
    (r"^fusion\.0\.conv\.(\d+)\.conv\.", r"fusion.dense.layers.\1.conv."),
    (r"^fusion\.0\.LFF\.", "fusion.dense.fuse."),
    (r"^fusion\.1\.conv_du\.0\.", "fusion.channel_attention.squeeze."),
    (r"^fusion\.1\.conv_du\.2\.", "fusion.channel_attention.excite."),
    (r"^fusion\.2\.", "fusion.project."),
    (r"^upscale\.0\.", "upsampler.expand."),
    (r"^upscale\.2\.", "upsampler.to_rgb."),
]
_COMPILED = [(re.compile(pattern), repl) for pattern, repl in _REFERENCE_TO_OURS]


def reference_to_ours(name: str) -> str:
    """Translate one reference parameter name (e.g. ``pam.bq.weight``) to this package's name."""
    for pattern, repl in _COMPILED:
        new, count = pattern.subn(repl, name)
        if count:
            return new
    return name


def is_reference_state_dict(state: Mapping[str, Any]) -> bool:
    """True when the names are those of the reference iPASSR implementation (PASSRnet shares its
    ``init_feature.`` / ``upscale.`` prefixes, not its residual dense groups)."""
    return any(k.startswith(("deep_feature.", "pam.bq.")) for k in state)


def _strip_wrappers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes."""
    out = {}
    for name, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            if name.startswith(prefix):
                name = name[len(prefix):]
        out[name] = value
    return out


def _load_torch_file(path: Path) -> Any:
    """torch.load with ``weights_only``; CheckpointError saying what the file is, in one line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", str(exc), re.IGNORECASE)
        if found:
            raise CheckpointError(
                f"{path}: refused to load: the checkpoint holds Python objects ({found.group(1)}), "
                "not only tensors; ipassr loads weights-only checkpoints, which cannot run code"
            ) from exc
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unreadable pickle data)") from exc
    except Exception as exc:  # truncated zip, wrong format, a safetensors file named .pth, ...
        raise CheckpointError(f"{path}: not a readable checkpoint ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0][:200]}" if text else exc.__class__.__name__


def _is_safetensors(path: Path) -> bool:
    """By suffix, or by content: an 8-byte header length followed by the JSON header's '{'."""
    if path.suffix.lower() == ".safetensors":
        return True
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def read_state_dict(path: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read weights from any supported file; returns (state dict in our names, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    metadata: dict[str, str] = {}
    if _is_safetensors(path):
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
            state = load_file(str(path))
        except Exception as exc:  # SafetensorError, OSError, ... for empty or damaged files
            raise CheckpointError(f"{path}: not a readable safetensors file "
                                  f"({_first_line(exc)})") from exc
        if not state:
            raise CheckpointError(f"{path}: the safetensors file holds no tensors")
    else:
        payload = _load_torch_file(path)
        state = _find_state_dict(payload, path)
        if isinstance(payload, dict) and isinstance(payload.get("model_config"), dict):
            metadata["model_config"] = json.dumps(payload["model_config"])
    state = _strip_wrappers(state)
    if is_reference_state_dict(state):
        state = {reference_to_ours(k): v for k, v in state.items()}
    return to_our_names(state), metadata


def _find_state_dict(payload: Any, path: Path) -> dict[str, torch.Tensor]:
    """Locate the tensor dictionary inside a loaded checkpoint."""
    if isinstance(payload, dict):
        for key in ("state_dict", "model", "model_state_dict", "params", "params_ema"):
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
        if payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            return dict(payload)
    raise CheckpointError(f"{path}: no state dict of tensors found in this checkpoint")


def config_from_state_dict(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
                           path: PathLike = "weights") -> ModelConfig:
    """Work out scale and variant from the metadata, or else from the tensors themselves."""
    if "model_config" in metadata:
        try:
            return ModelConfig(**json.loads(metadata["model_config"]))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: bad model_config metadata ({exc})") from exc
    expand = state.get("upsampler.expand.weight")
    if expand is None or expand.dim() != 4 or expand.shape[1] == 0:
        raise CheckpointError(f"{path}: not iPASSR weights (no upsampler found)")
    ratio = expand.shape[0] // expand.shape[1]
    scale = round(ratio ** 0.5)
    if scale * scale * expand.shape[1] != expand.shape[0]:
        raise CheckpointError(f"{path}: upsampler of shape {tuple(expand.shape)} fits no scale")
    return ModelConfig(scale=scale, use_attention="attention.query.weight" in state,
                       channels=expand.shape[1])


def load_into(model: IPASSR, state: Mapping[str, torch.Tensor], path: PathLike = "weights") -> None:
    """Copy ``state`` into ``model``, strictly: every tensor present, none extra, shapes equal."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if mismatched:
        problems.append(f"{len(mismatched)} of the wrong shape (e.g. {'; '.join(mismatched[:2])})")
    if problems:
        raise CheckpointError(f"{path}: weights do not fit the x{model.scale} network: "
                              + ", ".join(problems))
    model.load_state_dict(dict(state), strict=True)


# Parts whose tensors may be missing or differ in shape when weights move to another scale
# (the upsampler's 1x1 expansion to 64*s^2 channels) or variant (biPAM, absent without attention).
TRANSFERABLE_DIFFERENCES = ("upsampler.", "attention.")


def transfer_into(model: IPASSR, state: Mapping[str, torch.Tensor], path: PathLike = "weights"
                  ) -> list[str]:
    """Initialise ``model`` from weights of another scale or variant; return the names kept at init.

    Every tensor of the shared trunk must be present with its shape (CheckpointError otherwise);
    the upsampler's and biPAM's tensors are copied where names and shapes match, and those that do
    not (x4 -> x2 expansion; biPAM into a single-view network or out of one) are left as built.
    """
    expected = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in expected and v.shape == expected[k].shape}
    kept = sorted(k for k in expected if k not in fitting)
    strays = [k for k in kept if not k.startswith(TRANSFERABLE_DIFFERENCES)]
    strays += [k for k in state if k not in expected and not k.startswith(TRANSFERABLE_DIFFERENCES)]
    if strays:
        raise CheckpointError(f"{path}: weights do not fit the x{model.scale} network beyond its "
                              f"upsampler and biPAM: {len(strays)} tensors differ "
                              f"(e.g. {', '.join(sorted(strays)[:3])})")
    model.load_state_dict({**expected, **fitting}, strict=True)
    return kept


def load_network(path: PathLike, scale: int | None = None, *, architecture: str | None = None,
                 size: str | None = None) -> nn.Module:
    """Build the network that ``path`` describes and load its weights (CPU).

    iPASSR (train mode, as before), NAFSSR or PASSRnet (eval mode), detected from the file;
    ``architecture`` ('ipassr', 'nafssr', 'passrnet'), ``scale`` and ``size`` (NAFSSR's T/S/B/L)
    are checked against it, with a CheckpointError naming both when they disagree.
    """
    state, metadata = read_state_dict(path)
    found = detect_architecture(state, metadata, str(path))
    if architecture is not None:
        wanted = ARCHITECTURES.get(architecture.lower())
        if wanted is None:
            raise CheckpointError(f"--arch {architecture}: unknown (choose from "
                                  f"{', '.join(ARCHITECTURES)})")
        if wanted != found:
            raise CheckpointError(f"{path}: holds {NAMES.get(found, found)} weights but --arch "
                                  f"{architecture} was given")
    for name, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values")
    if found != ARCHITECTURE:
        return build_network(found, state, metadata, str(path), scale=scale, size=size)
    if size is not None:
        raise CheckpointError(f"{path}: --size {size} is for NAFSSR, but these are iPASSR weights")
    config = config_from_state_dict(state, metadata, path)
    if scale is not None and scale != config.scale:
        raise CheckpointError(
            f"{path}: holds x{config.scale} weights but x{scale} was requested")
    model = IPASSR.from_config(config)
    load_into(model, state, path)
    return model


def save_weights(model: nn.Module, path: PathLike, extra_metadata: Mapping[str, str] | None = None
                 ) -> None:
    """Save fp32 weights as safetensors, atomically, with scale and architecture in the metadata
    (any network ipassr runs: iPASSR, NAFSSR, PASSRnet)."""
    metadata = {
        "format": WEIGHTS_FORMAT,
        "architecture": getattr(model, "architecture", ARCHITECTURE),
        "scale": str(model.scale),
        "model_config": json.dumps(model.config.to_dict()),
    }
    metadata.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    state = {k: v.detach().float().contiguous().cpu() if v.is_floating_point() else v.cpu()
             for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
