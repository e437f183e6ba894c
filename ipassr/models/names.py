"""Which network a checkpoint holds, from its parameter names alone.

Torch-free, so that the CLI can ask before torch starts (``ipassr.startup``); ``ipassr.models.zoo``
detects checkpoints by the same rules. ``names`` is any collection of strings that holds the
parameter names (a state dict, or the strings of a checkpoint's pickle).
"""

from __future__ import annotations

from typing import Collection

NAFSSR_BLOCK_PREFIXES = ("body.0.module.blk.", "blocks.0.block.")  # official (BasicSR), ours


def is_passrnet(names: Collection[str]) -> bool:
    """True for PASSRnet weights (official names, which ours keep)."""
    return "pam.b1.weight" in names and "init_feature.0.weight" in names


def is_nafssr(names: Collection[str]) -> bool:
    """True for NAFSSR weights, official or ours."""
    return "intro.weight" in names and any(
        name.startswith(NAFSSR_BLOCK_PREFIXES) for name in names)


__all__ = ["is_passrnet", "is_nafssr"]
