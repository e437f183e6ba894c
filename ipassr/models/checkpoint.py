"""Loading and saving the weights of any registered network, safely.

Reads official checkpoints (the reference iPASSR's ``{"epoch", "state_dict"}``, BasicSR's
``{"params"}``, ...) in their own parameter names, plain state dicts, training checkpoints
(``{"model": ...}``) and our own safetensors files. The network is the one the metadata names
(``architecture``), else the registered network whose recogniser accepts the names; its spec
translates official names and builds it (``ipassr.models.registry``). Nothing is ever unpickled
beyond tensors (``torch.load(weights_only=True)``): a checkpoint is untrusted input. Loads are
strict: a missing, unexpected or misshapen tensor is an error.
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

from ..errors import CheckpointError, IpassrError
from ..data.io import PathLike, atomic_path
from .ipassr import IPASSR, reference_to_ours  # noqa: F401  (reference_to_ours: its old home)
from .registry import (NetworkSpec, build_from_spec, get_network, network_options, recognize,
                       registered_networks, size_options, spec_for_architecture, spec_of)

WEIGHTS_FORMAT = "ipassr-weights"

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
    state, metadata, _ = _read(path)
    return state, metadata


def _read(path: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str], NetworkSpec | None]:
    """The file's tensors in our names, its metadata, and the network they are (None: unknown)."""
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
    spec = (spec_for_architecture(metadata["architecture"]) if "architecture" in metadata
            else recognize(state))
    if spec is not None and spec.translate is not None:
        state = spec.translate(state)
    return state, metadata, spec


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


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], path: PathLike = "weights"
              ) -> None:
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
        raise CheckpointError(f"{path}: the weights do not fit the x{model.scale} "
                              f"{spec_of(model).display_name} network: " + ", ".join(problems))
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

    Any registered network (iPASSR in train mode, as before; NAFSSR and PASSRnet in eval mode),
    found from the file; ``architecture`` (a registered name), ``scale`` and ``size`` (e.g.
    NAFSSR's T/S/B/L) are checked against it, with a CheckpointError naming both when they
    disagree.
    """
    state, metadata, spec = _read(path)
    if spec is None:
        raise CheckpointError(_unknown_network(state, metadata, path))
    if architecture is not None and get_network(architecture) is not spec:
        raise CheckpointError(f"{path}: holds {spec.display_name} weights but --arch "
                              f"{architecture} was given")
    for name, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values")
    if size is not None:
        try:
            size_options(spec, size)  # a size the network has
        except IpassrError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
    try:
        network = (spec.from_state(state, metadata, str(path), scale=scale, size=size)
                   if spec.from_state is not None
                   else _from_saved_options(spec, metadata, path, scale, size))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read the {spec.display_name} network's shape "
                              f"({exc.__class__.__name__}: {exc})") from exc
    if scale is not None and scale != network.scale:
        raise CheckpointError(f"{path}: holds x{network.scale} {spec.display_name} weights but "
                              f"x{scale} was requested")
    load_into(network, state, path)
    return network


def _from_saved_options(spec: NetworkSpec, metadata: Mapping[str, str], path: PathLike,
                        scale: int | None, size: str | None) -> nn.Module:
    """A network without ``from_state``: ``build`` with the options saved with its weights (else
    those of ``size``), at the saved scale (else ``scale``)."""
    options = (json.loads(metadata["model_config"]) if "model_config" in metadata
               else size_options(spec, size))
    saved = options.pop("scale", metadata.get("scale"))
    if saved is None and scale is None:
        raise CheckpointError(f"{path}: the {spec.display_name} weights do not say their scale; "
                              "give --scale")
    return build_from_spec(spec, int(saved if saved is not None else scale), options)


def _unknown_network(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
                     path: PathLike) -> str:
    """Why no registered network takes these weights, and which ones ipassr runs."""
    networks = [spec.display_name + (f" ({'/'.join(spec.sizes)})" if spec.sizes else "")
                for spec in registered_networks().values()]
    runs = ", ".join(networks[:-1]) + f" and {networks[-1]}" if len(networks) > 1 else networks[0]
    if "architecture" in metadata:
        return (f"{path}: holds weights of the network {metadata['architecture']!r}, which is not "
                f"registered (install the package that provides it); ipassr runs {runs}")
    seen = ", ".join(sorted(state)[:4]) + (", ..." if len(state) > 4 else "")
    return (f"{path}: weights of an architecture ipassr does not know ({len(state)} tensors: "
            f"{seen}); it runs {runs}")


def save_weights(model: nn.Module, path: PathLike, extra_metadata: Mapping[str, str] | None = None
                 ) -> None:
    """Save fp32 weights as safetensors, atomically, with the network's architecture, scale and
    build options in the metadata (any registered network: ``load_network`` rebuilds it)."""
    metadata = {
        "format": WEIGHTS_FORMAT,
        "architecture": spec_of(model).tag,
        "scale": str(model.scale),
        "model_config": json.dumps(network_options(model)),
    }
    metadata.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    state = {k: v.detach().float().contiguous().cpu() if v.is_floating_point() else v.cpu()
             for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
