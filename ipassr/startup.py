"""What the CLI settles before torch starts: whether large CPU tensors use huge pages.

Torch reads ``THP_MEM_ALLOC_ENABLE`` at its first allocation, so the choice is made from the
command line alone, without torch: the networks named by ``--weights`` (and ``--arch``) are read
off the files' headers (safetensors metadata, or the parameter names in a torch zip's pickle,
judged by ``ipassr.models.names`` as ``ipassr.models.zoo`` judges a loaded state dict).
Huge pages cut iPASSR's page faults (about a third of a KITTI pass, docs/inference.md) but made
PASSRnet and NAFSSR slower (bench/README.md, "Other networks"), so they are asked for unless every
network named is one of those two.
"""

from __future__ import annotations

import json
import os
import pickletools
import struct
import sys
import zipfile
from pathlib import Path

from .models.names import is_nafssr, is_passrnet

OTHER_NETWORKS = ("nafssr", "passrnet")


def option_values(argv: list[str], option: str) -> list[str]:
    """Every value of ``option`` in ``argv`` (``--opt V`` and ``--opt=V``), as argparse reads
    them."""
    values = []
    for index, word in enumerate(argv):
        if word == option and index + 1 < len(argv):
            values.append(argv[index + 1])
        elif word.startswith(option + "="):
            values.append(word[len(option) + 1:])
    return values


def network_in(path: str | Path) -> str | None:
    """'ipassr', 'nafssr' or 'passrnet' from a weights file's header, without torch; None when the
    file cannot be read this way (the loader will say what is wrong with it)."""
    path = Path(path)
    if not path.exists() and "=" in str(path):  # evaluate's LABEL=FILE
        path = Path(str(path).split("=", 1)[1])
    try:
        if path.suffix == ".safetensors":
            return _safetensors_network(path)
        if zipfile.is_zipfile(path):
            return _pickle_network(path)
    except (OSError, ValueError, zipfile.BadZipFile, struct.error):
        return None
    return None


def _safetensors_network(path: Path) -> str | None:
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        if length > 100_000_000:
            return None
        metadata = json.loads(file.read(length)).get("__metadata__") or {}
    architecture = str(metadata.get("architecture", ""))
    return next((name for name in OTHER_NETWORKS if architecture.startswith(name)),
                "ipassr" if architecture.startswith("ipassr") else None)


def _pickle_network(path: Path) -> str | None:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            return None
        strings = [arg for _, arg, _ in pickletools.genops(archive.read(pickles[0]))
                   if isinstance(arg, str)]
    names = set(strings)  # the parameter names are among the pickle's strings
    return "passrnet" if is_passrnet(names) else "nafssr" if is_nafssr(names) else "ipassr"


def huge_pages_help(argv: list[str]) -> bool:
    """False when every network the command names (``--arch``, or ``--weights`` files) is NAFSSR
    or PASSRnet; True otherwise (iPASSR, the shipped weights, or nothing known)."""
    named = option_values(argv, "--arch")
    if not named:
        named = [network_in(value) for value in option_values(argv, "--weights")]
    return not named or any(name not in OTHER_NETWORKS for name in named)


def use_huge_pages_for_large_tensors(argv: list[str] | None = None) -> None:
    """Ask torch to back CPU tensors of 2 MiB and more with transparent huge pages, when the
    command runs iPASSR (``huge_pages_help``). Only works before torch is imported; an explicit
    THP_MEM_ALLOC_ENABLE in the environment is respected."""
    if "torch" not in sys.modules and huge_pages_help(sys.argv[1:] if argv is None else argv):
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


__all__ = ["huge_pages_help", "network_in", "option_values", "use_huge_pages_for_large_tensors"]
