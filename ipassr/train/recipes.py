"""Each network's published training recipe, the default of ``ipassr train --arch NAME``.

A recipe is a config file under ``recipes/`` (``ipassr/recipes`` links there; a wheel carries
the files) that a ``NetworkSpec`` names in ``recipe``, ``{size}`` standing for the network's
size: ``nafssr-{size}.toml`` -> ``recipes/nafssr-T.toml``. Each value in it says in a comment
where in the official code it comes from. iPASSR's recipe is ``TrainConfig``'s defaults; a
network whose spec names none (a plugin's) trains with those defaults and ``loss`` (L1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..errors import IpassrError
from ..models.registry import NetworkSpec, get_network, size_options
from .config import TrainConfig, apply_overrides, read_config_file

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def network_size(spec: NetworkSpec, size: str | None) -> str | None:
    """``size`` as the spec spells it (NAFSSR's 'T' for 't'), or its default size; IpassrError
    naming the sizes when it has no such size."""
    size_options(spec, size)
    size = size if size is not None else spec.default_size
    return None if size is None else str(size).upper()


def recipe_path(arch: str, size: str | None = None) -> Path | None:
    """The recipe file of network ``arch`` at ``size`` (None when its spec names none)."""
    spec = get_network(arch)
    if spec.recipe is None:
        return None
    path = RECIPES / spec.recipe.format(size=network_size(spec, size))
    if not path.is_file():
        raise IpassrError(f"{path}: {spec.display_name}'s training recipe is missing from this "
                          "installation")
    return path


def recipe_values(arch: str, size: str | None = None) -> dict[str, Any]:
    """The recipe's keys and values, with ``arch`` and the size in them."""
    spec = get_network(arch)
    path = recipe_path(arch, size)
    values = read_config_file(path) if path is not None else {}
    return {**values, "arch": spec.name, "model_size": network_size(spec, size)}


def recipe_config(arch: str = "ipassr", size: str | None = None,
                  changes: Mapping[str, Any] | None = None) -> TrainConfig:
    """``TrainConfig`` with network ``arch``'s recipe applied, then ``changes`` (the API's way to
    train a network as published: ``Trainer(recipe_config("nafssr", "T", {...}), run_dir)``)."""
    config = apply_overrides(TrainConfig(), recipe_values(arch, size), f"the {arch} recipe")
    return apply_overrides(config, dict(changes or {}), "changes")


__all__ = ["RECIPES", "recipe_path", "recipe_values", "recipe_config", "network_size"]
