"""What the CLI settles before torch starts: whether large CPU tensors use huge pages.

Torch reads ``THP_MEM_ALLOC_ENABLE`` at its first allocation, so the choice is made from the
command line alone, without torch: the networks named by ``--weights`` (and ``--arch``) are read
off the files' headers (safetensors metadata, or the parameter names in a torch zip's pickle,
judged by the registered networks' torch-free recognisers, as ``ipassr.models.checkpoint`` judges
a loaded state dict). Huge pages cut iPASSR's page faults (about a third of a KITTI pass,
docs/inference.md) but made PASSRnet and NAFSSR slower (bench/README.md, "Other networks"), so
they are asked for unless every network named is one whose spec says they do not help
(``NetworkSpec.huge_pages``).
"""

from __future__ import annotations

import json
import os
import pickletools
import struct
import sys
import zipfile
from pathlib import Path

from .models.registry import get_network, recognize, spec_for_architecture
from .errors import IpassrError


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
    """The registered name of the network in a weights file ('ipassr', 'nafssr', ...), from its
    header, without torch; None when the file cannot be read this way or holds no registered
    network (the loader will say what is wrong with it)."""
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
    spec = spec_for_architecture(str(metadata.get("architecture", "")))
    return None if spec is None else spec.name


def _pickle_network(path: Path) -> str | None:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            return None
        strings = [arg for _, arg, _ in pickletools.genops(archive.read(pickles[0]))
                   if isinstance(arg, str)]
    spec = recognize(set(strings))  # the parameter names are among the pickle's strings
    return None if spec is None else spec.name


def huge_pages_help(argv: list[str]) -> bool:
    """False when every network the command names (``--arch``, or ``--weights`` files) is one
    that huge pages do not help (NAFSSR, PASSRnet); True otherwise (iPASSR, the shipped weights,
    or nothing known)."""
    named = option_values(argv, "--arch")
    if not named:
        named = [network_in(value) for value in option_values(argv, "--weights")]
    return not named or any(name is None or _helped(name) for name in named)


def _helped(name: str) -> bool:
    """Whether huge pages help the registered network ``name`` (unknown names: yes)."""
    try:
        return get_network(name).huge_pages
    except IpassrError:
        return True


def use_huge_pages_for_large_tensors(argv: list[str] | None = None) -> None:
    """Ask torch to back CPU tensors of 2 MiB and more with transparent huge pages, when the
    command runs iPASSR (``huge_pages_help``). Only works before torch is imported; an explicit
    THP_MEM_ALLOC_ENABLE in the environment is respected."""
    if "torch" not in sys.modules and huge_pages_help(sys.argv[1:] if argv is None else argv):
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


__all__ = ["huge_pages_help", "network_in", "option_values", "use_huge_pages_for_large_tensors"]
