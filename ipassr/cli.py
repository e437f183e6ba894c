"""The ``ipassr`` command line: one subcommand per job, each in ``ipassr/commands/<name>.py``.

A command module provides ``add_parser(subparsers)`` and ``run(args) -> int``. Usage errors and
bad input (``IpassrError``) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from .errors import IpassrError

COMMANDS = ("demo", "infer", "evaluate", "prepare", "train", "visualize", "export")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="ipassr", description="iPASSR stereo image super-resolution.")
    parser.add_argument("--version", action="version", version=f"ipassr {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.commands.{name}":
                continue  # command not built yet
            raise
        module.add_parser(subparsers)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"ipassr: warning: {message}", file=sys.stderr)


def use_huge_pages_for_large_tensors() -> None:
    """Ask torch to back CPU tensors of 2 MiB and more with transparent huge pages.

    A forward pass allocates and frees hundreds of MB of activations; with 4 KiB pages the
    kernel's page faults took about a third of the time at KITTI size (bench/README.md).
    Torch reads THP_MEM_ALLOC_ENABLE at its first allocation, so this only works before torch
    is imported; an explicit THP_MEM_ALLOC_ENABLE=0 in the environment is respected.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ipassr`` console script."""
    use_huge_pages_for_large_tensors()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    warnings.showwarning = _show_warning
    # before torch starts its worker threads, so that they flush subnormals too (faster attention)
    from .chunked import subnormals_flushed

    try:
        with subnormals_flushed():
            return int(args.run(args) or 0)
    except IpassrError as exc:
        print(f"ipassr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ipassr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
