"""The built-in networks' specs: iPASSR, NAFSSR and PASSRnet, registered like any other network.

Torch-free: the builders, translations and loaders are ``lazy`` references into the networks'
modules, which import torch only when a network is built or loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .names import IPASSR_ARCHITECTURE, NAFSSR_SIZES, is_ipassr, is_nafssr, is_passrnet
from .registry import NetworkSpec, lazy, register_network

if TYPE_CHECKING:
    from torch import nn

FEATURE_MAPS_ALIVE = 10  # feature maps of a network's width alive per view inside a block


def untiled_bytes(network: "nn.Module", batch: int, height: int, width: int, channels: int) -> int:
    """Peak activation bytes of a Siamese network run untiled on (batch, 3, height, width) pairs:
    about ten feature maps of ``channels`` per view alive inside a block (a conservative count,
    docs/zoo.md), plus both float32 HR outputs."""
    element = next(network.parameters()).element_size()
    features = 2 * batch * height * width * FEATURE_MAPS_ALIVE * channels * element
    outputs = 2 * batch * 3 * height * width * network.scale ** 2 * 4
    return features + outputs


def _has_bipam(network: "nn.Module") -> bool:
    """iPASSR's single-view variant (``use_attention=False``) has no biPAM and so no maps."""
    return network.attention is not None


IPASSR_SPEC = register_network(NetworkSpec(
    name="ipassr", label="iPASSR", architecture=IPASSR_ARCHITECTURE,
    build=lazy("ipassr.models.ipassr:IPASSR"),
    recognizes=is_ipassr,
    translate=lazy("ipassr.models.ipassr:translate_reference"),
    from_state=lazy("ipassr.models.ipassr:from_state"),
    attention_maps=_has_bipam, banded=True, huge_pages=True,
    export_forward=lazy("ipassr.models.ipassr:ExportForward"),
    loss=lazy("ipassr.models.losses:training_objective"),
))

NAFSSR_SPEC = register_network(NetworkSpec(
    name="nafssr", label="NAFSSR",
    build=lazy("ipassr.models.nafssr:NAFSSR"),
    sizes={size: {"width": width, "blocks": blocks}
           for size, (width, blocks) in NAFSSR_SIZES.items()},
    default_size="T",
    recognizes=is_nafssr,
    translate=lazy("ipassr.models.nafssr:translate_official"),
    from_state=lazy("ipassr.models.nafssr:from_state"),
    attention_rows=True,
    memory=lambda network, batch, height, width: untiled_bytes(
        network, batch, height, width, network.config.width),
    loss=lazy("ipassr.models.nafssr:training_objective"), recipe="nafssr-{size}.toml",
))

PASSRNET_SPEC = register_network(NetworkSpec(
    name="passrnet", label="PASSRnet",
    build=lazy("ipassr.models.passrnet:PASSRnet"),
    recognizes=is_passrnet,
    from_state=lazy("ipassr.models.passrnet:from_state"),
    attention_rows=True, valid_masks=True,
    batch_independent=False,  # the official mask cleaning links the pairs of a batch
    size_windows=False,  # convolutions, row attention and a morphology loop run to a fixed point
    memory=lambda network, batch, height, width: untiled_bytes(
        network, batch, height, width, 64),
    loss=lazy("ipassr.models.passrnet:training_objective"), recipe="passrnet.toml",
))

__all__ = ["IPASSR_SPEC", "NAFSSR_SPEC", "PASSRNET_SPEC", "untiled_bytes"]
