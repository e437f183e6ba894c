"""Other published stereo-SR networks, run by everything ipassr offers: NAFSSR and PASSRnet.

``ipassr.load_model`` / ``load_network`` and every command take their official checkpoints as
published; the network and its size are read off the tensors' names and shapes (an explicit
``architecture`` / ``size`` is checked against them). Each network has ``scale``, ``config``
(with ``to_dict``), ``architecture``, ``forward(left, right) -> (sr_left, sr_right)``,
``set_attention_memory(bytes)`` (row-chunked attention, same result) and
``attention_row(left, right, row)`` for the visualisations. ``docs/zoo.md`` says what "faithful"
means for each.
"""

from __future__ import annotations

import json
from typing import Mapping

import torch
from torch import nn

from ..errors import CheckpointError
from . import nafssr
from . import passrnet
from .nafssr import NAFSSR, NAFSSRConfig
from .passrnet import PASSRnet, PASSRnetConfig

IPASSR_ARCHITECTURE = "ipassr-v1"
ARCHITECTURES = {"ipassr": IPASSR_ARCHITECTURE, "nafssr": nafssr.ARCHITECTURE,
                 "passrnet": passrnet.ARCHITECTURE}
SUPPORTED = "iPASSR (x2/x4), NAFSSR (T/S/B/L or any width and depth) and PASSRnet (any scale)"
NAMES = {IPASSR_ARCHITECTURE: "iPASSR", nafssr.ARCHITECTURE: "NAFSSR",
         passrnet.ARCHITECTURE: "PASSRnet"}

__all__ = ["NAFSSR", "PASSRnet", "NAFSSRConfig", "PASSRnetConfig", "ARCHITECTURES", "NAMES",
           "detect_architecture", "to_our_names", "build_network", "SUPPORTED"]


def to_our_names(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official NAFSSR names (BasicSR's ``body.N.module...``) renamed to ours; others as given."""
    if nafssr.is_official(state):
        return {nafssr.official_to_ours(k): v for k, v in state.items()}
    return dict(state)


def detect_architecture(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
                        path: str = "weights") -> str:
    """'ipassr-v1', 'nafssr' or 'passrnet', from the metadata or else the tensor names."""
    if "architecture" in metadata:
        return metadata["architecture"]
    if passrnet.is_passrnet(state):
        return passrnet.ARCHITECTURE
    if nafssr.is_nafssr(state):
        return nafssr.ARCHITECTURE
    if "upsampler.expand.weight" in state:
        return IPASSR_ARCHITECTURE
    seen = ", ".join(sorted(state)[:4]) + (", ..." if len(state) > 4 else "")
    raise CheckpointError(f"{path}: weights of an architecture ipassr does not know ({len(state)} "
                          f"tensors: {seen}); it runs {SUPPORTED}")


def _config(architecture: str, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
            path: str):
    kind = {nafssr.ARCHITECTURE: (NAFSSRConfig, nafssr.config_from_state),
            passrnet.ARCHITECTURE: (PASSRnetConfig, passrnet.config_from_state)}[architecture]
    try:
        if "model_config" in metadata:
            return kind[0](**json.loads(metadata["model_config"]))
        return kind[1](state)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read the {architecture} network's shape "
                              f"({exc.__class__.__name__}: {exc})") from exc


def build_network(architecture: str, state: Mapping[str, torch.Tensor],
                  metadata: Mapping[str, str], path: str = "weights", *, scale: int | None = None,
                  size: str | None = None) -> nn.Module:
    """The NAFSSR or PASSRnet network these weights describe, with the weights loaded (eval mode).

    ``scale`` and ``size`` ('T', 'S', 'B' or 'L', NAFSSR only) are checked against the tensors.
    """
    config = _config(architecture, state, metadata, path)
    name = "NAFSSR" if architecture == nafssr.ARCHITECTURE else "PASSRnet"
    if scale is not None and scale != config.scale:
        raise CheckpointError(f"{path}: holds x{config.scale} {name} weights but x{scale} was "
                              "requested")
    if size is not None:
        if architecture != nafssr.ARCHITECTURE:
            raise CheckpointError(f"{path}: --size {size} is for NAFSSR, but these are {name} "
                                  "weights")
        wanted = nafssr.SIZES.get(size.upper())
        if wanted is None:
            raise CheckpointError(f"--size {size}: NAFSSR sizes are {', '.join(nafssr.SIZES)}")
        if wanted != (config.width, config.blocks):
            raise CheckpointError(f"{path}: holds NAFSSR-{config.size_name} (width {config.width}, "
                                  f"{config.blocks} blocks) but NAFSSR-{size.upper()} (width "
                                  f"{wanted[0]}, {wanted[1]} blocks) was requested")
    network = (NAFSSR if architecture == nafssr.ARCHITECTURE else PASSRnet).from_config(config)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}: the weights do not fit {name} x{config.scale}"
            + (f" ({config.width} wide, {config.blocks} blocks)" if name == "NAFSSR" else "")
            + f": {len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} of the wrong "
            f"shape (e.g. {', '.join((missing + unexpected + wrong)[:3])})")
    network.load_state_dict(dict(state), strict=True)
    return network.eval()
