"""Which network a checkpoint holds, from its parameter names alone, and the networks' fixed names.

Torch-free, so that the CLI can ask before torch starts (``ipassr.startup``) and the registry's
built-in specs (``ipassr.models.specs``) can point here. ``names`` is any collection of strings
that holds the parameter names (a state dict, or the strings of a checkpoint's pickle).
"""

from __future__ import annotations

import re
from typing import Collection, Sequence

IPASSR_ARCHITECTURE = "ipassr-v1"  # the metadata name of iPASSR weights (versioned: v1 = the paper)
NAFSSR_SIZES = {"T": (48, 16), "S": (64, 32), "B": (96, 64), "L": (128, 128)}  # width, blocks
NAFSSR_BLOCK_PREFIXES = ("body.0.module.blk.", "blocks.0.block.")  # official (BasicSR), ours
IPASSR_REFERENCE_PREFIXES = ("deep_feature.", "pam.bq.")  # the reference code's, not PASSRnet's


def is_ipassr(names: Collection[str]) -> bool:
    """True for iPASSR weights, ours or the reference code's (PASSRnet shares its
    ``init_feature.`` / ``upscale.`` prefixes, not its residual dense groups)."""
    return "upsampler.expand.weight" in names or is_ipassr_reference(names)


def is_ipassr_reference(names: Collection[str]) -> bool:
    """True when the names are those of the reference iPASSR implementation."""
    return any(name.startswith(IPASSR_REFERENCE_PREFIXES) for name in names)


def is_passrnet(names: Collection[str]) -> bool:
    """True for PASSRnet weights (official names, which ours keep)."""
    return "pam.b1.weight" in names and "init_feature.0.weight" in names


def is_nafssr(names: Collection[str]) -> bool:
    """True for NAFSSR weights, official or ours."""
    return "intro.weight" in names and any(
        name.startswith(NAFSSR_BLOCK_PREFIXES) for name in names)


def renamed(name: str, rules: Sequence[tuple[re.Pattern, str]]) -> str:
    """``name`` rewritten by the first rule (compiled pattern, replacement) that matches it: how
    an official parameter name becomes ours."""
    for pattern, replacement in rules:
        new, count = pattern.subn(replacement, name)
        if count:
            return new
    return name


__all__ = ["renamed", "is_ipassr", "is_ipassr_reference", "is_passrnet", "is_nafssr",
           "IPASSR_ARCHITECTURE", "NAFSSR_SIZES"]
