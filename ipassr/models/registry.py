"""The network registry: every stereo-SR network ipassr trains, runs, evaluates and exports.

A ``NetworkSpec`` says everything the rest of the package needs to know about one network family;
code outside ``ipassr.models`` asks the spec, never the network's class. iPASSR, NAFSSR and
PASSRnet register themselves here (``ipassr.models.specs``) like any other network; another
package's network registers with ``register_network(NetworkSpec(name=..., build=...))`` or through
the ``ipassr.networks`` entry-point group (an entry point naming a ``NetworkSpec``, or a callable
returning one). Only ``name`` and ``build`` are required (docs/networks.md). This module does not
import torch: the CLI lists the networks before torch starts.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping

from ..errors import IpassrError

if TYPE_CHECKING:  # torch stays unimported until a network is built
    from torch import nn

ENTRY_POINT_GROUP = "ipassr.networks"


@dataclass(frozen=True)
class NetworkSpec:
    """One network family and what it offers.

    ``build(scale, **options)`` returns the network: an ``nn.Module`` whose ``forward(left, right)``
    returns ``(sr_left, sr_right)``; views (B, 3, H, W) in [0, 1] -> (B, 3, sH, sW). ``options``
    are a size's options (``sizes``) or those saved with the weights. Everything else is optional;
    the defaults describe a plain network: trained with L1, no attention maps, run untiled.
    """

    name: str
    build: Callable[..., "nn.Module"]
    label: str = ""                                   # display name (default: name)
    architecture: str = ""        # the name in a weights file's metadata (default: name)
    sizes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # "T" -> build options
    default_size: str | None = None
    scales: tuple[int, ...] = ()                      # () = any scale
    # torch-free: whether a set of parameter names is this network's (official or ours)
    recognizes: Callable[[Collection[str]], bool] | None = None
    # official checkpoint keys -> ours (as timm's checkpoint_filter_fn), beside the model
    translate: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    # (state, metadata, path, scale=, size=) -> the network these tensors describe, unloaded
    # (ipassr then checks the scale and loads strictly); None: build(scale, **saved options)
    from_state: Callable[..., "nn.Module"] | None = None
    # biPAM-style maps: forward(..., return_attention=True) and the fast path's per-pixel details;
    # a callable (network -> bool) when some variants lack them
    attention_maps: bool | Callable[["nn.Module"], bool] = False
    valid_masks: bool = False       # network.valid_mask(left, right) -> the left view's (B, 1, H, W)
    attention_rows: bool = False    # network.attention_row(left, right, row) -> two (B, W, W) maps
    banded: bool = False            # runs ipassr.inference.fast: exact bands of rows, any size
    batch_independent: bool = True  # a pair's output never depends on its batch neighbours
    exportable: bool = True         # ONNX / TorchScript export
    # a window sized from the input (NAFSSR's pooling): its exports are also checked past one
    size_windows: bool = True
    # network -> the module to export (default: the network's own forward)
    export_forward: Callable[["nn.Module"], "nn.Module"] | None = None
    huge_pages: bool = False        # CPU tensors on transparent huge pages help it (ipassr.startup)
    # (network, batch, height, width) -> peak activation bytes of one untiled forward (None: unknown)
    memory: Callable[..., int] | None = None
    # its published training defaults: a file in recipes/, {size} standing for the size
    recipe: str | None = None
    # (training config) -> its TrainingObjective (models/training.py); None: plain L1 / MSE
    loss: Callable[..., Any] | None = None

    @property
    def display_name(self) -> str:
        return self.label or self.name

    @property
    def tag(self) -> str:
        """The ``architecture`` its weights files carry in their metadata."""
        return self.architecture or self.name

    def offers_attention_maps(self, network: "nn.Module") -> bool:
        """Whether ``network`` (built from this spec) returns biPAM-style maps and valid masks."""
        maps = self.attention_maps
        return bool(maps(network) if callable(maps) else maps)


def lazy(target: str) -> Callable[..., Any]:
    """A function that imports ``"module:attribute"`` when first called and calls it: a spec's
    builders stay torch-free until a network is really needed."""
    module_name, _, attribute = target.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module_name), attribute)(*args, **kwargs)

    call.__name__ = call.__qualname__ = attribute
    call.__doc__ = f"{target}, imported on first call."
    return call


_REGISTRY: dict[str, NetworkSpec] = {}
_BROKEN: dict[str, str] = {}  # plugin name -> why it failed to load
_LOADED = False


def register_network(spec: NetworkSpec, *, replace: bool = False) -> NetworkSpec:
    """Add ``spec`` to the registry (an existing name only with ``replace``); returns it."""
    if not isinstance(spec, NetworkSpec):
        raise IpassrError(f"register_network takes a NetworkSpec, not {type(spec).__name__}")
    if not spec.name or not callable(spec.build):
        raise IpassrError(f"a NetworkSpec needs a name and a build function (got {spec.name!r})")
    key = spec.name.lower()
    if key in _REGISTRY and not replace and _REGISTRY[key] is not spec:
        raise IpassrError(f"a network named {spec.name!r} is already registered")
    _REGISTRY[key] = spec
    return spec


def _load() -> None:
    """Register the built-in networks, then those other packages declare, once."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from . import specs  # noqa: F401  (registers iPASSR, NAFSSR, PASSRnet)
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            value = entry.load()
            spec = value if isinstance(value, NetworkSpec) else value()
            if not isinstance(spec, NetworkSpec):
                raise TypeError(f"gave {type(spec).__name__}, not an ipassr.NetworkSpec")
            register_network(spec, replace=True)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break ipassr
            _BROKEN[entry.name.lower()] = (f"the network plugin {entry.name!r} ({entry.value}) "
                                           f"failed to load: {exc.__class__.__name__}: {exc}")
            warnings.warn(_BROKEN[entry.name.lower()], stacklevel=2)


def registered_networks() -> dict[str, NetworkSpec]:
    """Every registered network by name: the built-in ones, then plugins."""
    _load()
    return dict(_REGISTRY)


def get_network(name: str) -> NetworkSpec:
    """The spec registered as ``name`` (case-insensitive); IpassrError naming the choices."""
    networks = registered_networks()
    spec = networks.get(str(name).lower())
    if spec is None:
        if str(name).lower() in _BROKEN:
            raise IpassrError(_BROKEN[str(name).lower()])
        raise IpassrError(f"unknown network {name!r} (registered: {', '.join(networks)})")
    return spec


def network_names() -> list[str]:
    """The registered names (the CLI's ``--arch`` choices)."""
    return list(registered_networks())


def size_names() -> list[str]:
    """Every size any registered network has (the CLI's ``--model-size`` choices)."""
    return list(dict.fromkeys(size for spec in registered_networks().values()
                              for size in spec.sizes))


def spec_for_architecture(architecture: str) -> NetworkSpec | None:
    """The spec whose weights carry ``architecture`` in their metadata (or of that name)."""
    for spec in registered_networks().values():
        if architecture in (spec.tag, spec.name):
            return spec
    return None


def recognize(names: Collection[str]) -> NetworkSpec | None:
    """The first registered network whose recogniser accepts these parameter names."""
    for spec in registered_networks().values():
        if spec.recognizes is not None and spec.recognizes(names):
            return spec
    return None


def spec_of(network: "nn.Module") -> NetworkSpec:
    """The spec of a network: by its ``architecture`` (every built network has one), else a
    spec with the defaults for an unregistered module."""
    tag = getattr(network, "architecture", None)
    spec = spec_for_architecture(tag) if isinstance(tag, str) else None
    if spec is None:
        return NetworkSpec(name=type(network).__name__, build=type(network))
    return spec


def build_network(name: str, scale: int, size: str | None = None, **options: Any) -> "nn.Module":
    """Build the registered network ``name`` for ``scale``: a size's options (``size`` or the
    default size) updated with ``options``. Records what it was built from on the network
    (``architecture``, ``scale``, ``build_options``) where it does not say so itself, so that
    ``save_weights`` can name it."""
    spec = get_network(name)
    return build_from_spec(spec, scale, {**size_options(spec, size), **options})


def size_options(spec: NetworkSpec, size: str | None) -> dict[str, Any]:
    """The build options of ``size`` (default: the spec's default size; none without sizes)."""
    size = size if size is not None else spec.default_size
    if size is None:
        return {}
    if not spec.sizes:
        sized = ", ".join(s.display_name for s in registered_networks().values() if s.sizes)
        raise IpassrError(f"size {size} is for {sized}, not {spec.display_name}")
    options = spec.sizes.get(str(size).upper())
    if options is None:
        raise IpassrError(f"size {size}: {spec.display_name} sizes are "
                          f"{', '.join(spec.sizes)}")
    return dict(options)


def build_from_spec(spec: NetworkSpec, scale: int, options: Mapping[str, Any]) -> "nn.Module":
    """``spec.build(scale, **options)``, tagged as ``build_network`` says."""
    if spec.scales and scale not in spec.scales:
        raise IpassrError(f"{spec.display_name} runs at x{', x'.join(map(str, spec.scales))}, "
                          f"not x{scale}")
    network = spec.build(scale, **options)
    for attribute, value in (("architecture", spec.tag), ("scale", scale),
                             ("build_options", dict(options))):
        if not hasattr(network, attribute):
            setattr(network, attribute, value)
    return network


def network_options(network: "nn.Module") -> dict[str, Any]:
    """What rebuilds ``network`` (scale included), as saved with its weights: its ``config``
    (``to_dict``), or the options ``build_network`` recorded."""
    config = getattr(network, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        return dict(config.to_dict())
    return {"scale": network.scale, **getattr(network, "build_options", {})}


__all__ = ["NetworkSpec", "register_network", "registered_networks", "get_network", "lazy",
           "network_names", "size_names", "spec_for_architecture", "recognize", "spec_of",
           "build_network", "build_from_spec", "size_options", "network_options",
           "ENTRY_POINT_GROUP"]
