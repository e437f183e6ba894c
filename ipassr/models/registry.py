"""The network registry: every stereo-SR network ipassr trains, runs, evaluates and exports.

A ``NetworkSpec`` says everything the rest of the package needs to know about one network family;
code outside ``ipassr.models`` asks the spec, never the network's class. iPASSR, NAFSSR and
PASSRnet register themselves here; another package's network registers with
``register_network(NetworkSpec(name=..., build=...))`` or through the ``ipassr.networks``
entry-point group (an entry point naming a ``NetworkSpec``, or a callable returning one).
Only ``name`` and ``build`` are required (docs/networks.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping

from ..errors import IpassrError

if TYPE_CHECKING:  # torch stays unimported until a network is built
    from torch import nn

ENTRY_POINT_GROUP = "ipassr.networks"


@dataclass(frozen=True)
class NetworkSpec:
    """One network family and what it offers.

    ``build(scale, **options)`` returns the network (an ``nn.Module`` whose
    ``forward(left, right)`` returns ``(sr_left, sr_right)``; views (B, 3, H, W) in [0, 1] ->
    (B, 3, sH, sW)). ``options`` are a size's options (``sizes``) and the training config's model
    options.
    """

    name: str
    build: Callable[..., "nn.Module"]
    label: str = ""                                   # display name (default: name)
    sizes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # "T" -> build options
    default_size: str | None = None
    scales: tuple[int, ...] = ()                      # () = any scale
    # torch-free: whether a set of parameter names is this network's (official or ours)
    recognizes: Callable[[Collection[str]], bool] | None = None
    # official checkpoint keys -> ours (as timm's checkpoint_filter_fn), beside the model
    translate: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    # (state dict, metadata, path) -> the built network with its shape read off the tensors
    from_state: Callable[..., "nn.Module"] | None = None
    attention_maps: bool = False    # returns biPAM-style maps and valid masks
    banded: bool = False            # exact tiling in bands of rows (memory-bounded at any size)
    batch_independent: bool = True  # a pair's output never depends on its batch neighbours
    exportable: bool = True         # ONNX / TorchScript export
    huge_pages: bool = False        # CPU tensors on transparent huge pages help it
    # (network, batch, height, width) -> peak activation bytes of one untiled forward
    memory: Callable[..., int] | None = None
    recipe: str | None = None       # file under recipes/ with its published training defaults
    # (config) -> loss function (sr, hr, lr, extras) -> (total, {term: value}); None: plain L1
    loss: Callable[..., Any] | None = None

    @property
    def display_name(self) -> str:
        return self.label or self.name


_REGISTRY: dict[str, NetworkSpec] = {}
_ENTRY_POINTS_LOADED = False


def register_network(spec: NetworkSpec, *, replace: bool = False) -> NetworkSpec:
    """Add ``spec`` to the registry (an existing name only with ``replace``); returns it."""
    if not isinstance(spec, NetworkSpec):
        raise IpassrError(f"register_network takes a NetworkSpec, not {type(spec).__name__}")
    key = spec.name.lower()
    if key in _REGISTRY and not replace and _REGISTRY[key] is not spec:
        raise IpassrError(f"a network named {spec.name!r} is already registered")
    _REGISTRY[key] = spec
    return spec


def _load_entry_points() -> None:
    """Register the networks other packages declare in the ``ipassr.networks`` group, once."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            value = entry.load()
            spec = value if isinstance(value, NetworkSpec) else value()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break ipassr
            raise IpassrError(f"the network plugin {entry.name!r} ({entry.value}) failed to "
                              f"load: {exc.__class__.__name__}: {exc}") from exc
        if not isinstance(spec, NetworkSpec):
            raise IpassrError(f"the network plugin {entry.name!r} ({entry.value}) gave "
                              f"{type(spec).__name__}, not an ipassr.NetworkSpec")
        register_network(spec, replace=True)


def registered_networks() -> dict[str, NetworkSpec]:
    """Every registered network by name: the built-in ones, then plugins."""
    _load_entry_points()
    return dict(_REGISTRY)


def get_network(name: str) -> NetworkSpec:
    """The spec registered as ``name`` (case-insensitive); IpassrError naming the choices."""
    networks = registered_networks()
    spec = networks.get(str(name).lower())
    if spec is None:
        raise IpassrError(f"unknown network {name!r} (registered: {', '.join(networks)})")
    return spec


__all__ = ["NetworkSpec", "register_network", "registered_networks", "get_network",
           "ENTRY_POINT_GROUP"]
