"""The ``ipassr`` command line: one subcommand per job, each in ``ipassr/commands/<name>.py``.

A command module provides ``add_parser(subparsers)`` and ``run(args) -> int``. Every failure a
user can cause (bad input, ``IpassrError``; files, folders, permissions and full disks,
``OSError``) prints one ``ipassr: error:`` line and exits with status 2; an unexpected internal
error prints one line too (exit 1), and ``--debug`` shows its traceback. SIGTERM is handled as
SIGINT: the command stops, its atomic writes leave no temporary file, and it exits 130.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import signal
import sys
import threading
import warnings

from .errors import IpassrError
from .startup import use_huge_pages_for_large_tensors

COMMANDS = ("demo", "infer", "evaluate", "prepare", "train", "report", "visualize", "export",
            "serve")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with usage errors as one ``ipassr: error:`` line (exit 2) instead of the usage
    text; subcommand parsers are of this class too."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.replace("ipassr ", "", 1) if self.prog != "ipassr" else ""
        where = f"{command}: " if command else ""
        help_hint = f"ipassr {command} --help" if command else "ipassr --help"
        self.exit(2, f"ipassr: error: {where}{message} (see {help_hint})\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available subcommand."""
    from . import __version__

    parser = ArgumentParser(
        prog="ipassr", description="iPASSR stereo image super-resolution.")
    parser.add_argument("--version", action="version", version=f"ipassr {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an unexpected error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).add_parser(subparsers)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"ipassr: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ipassr`` console script."""
    warnings.showwarning = _show_warning  # from the start: a broken network plugin warns here
    use_huge_pages_for_large_tensors(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        # before torch starts its worker threads, so that they flush subnormals too (faster
        # attention)
        from .inference.fast.attention import subnormals_flushed

        with subnormals_flushed():
            return int(args.run(args) or 0)
    except IpassrError as exc:
        return _fail(str(exc))
    except OSError as exc:  # a file or folder the user named: missing, unwritable, disk full
        return _fail(_describe_os_error(exc))
    except MemoryError:
        return _fail("out of memory (try a smaller --max-memory or --batch-size)")
    except KeyboardInterrupt as exc:  # a command may say what was done and how to go on
        print(f"ipassr: interrupted{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - anything else is our bug: one line (--debug: all)
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"ipassr: error: internal error ({exc.__class__.__name__}: {first[:300]}); run "
              "again with --debug for the traceback, and please report it", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _fail(message: str) -> int:
    print(f"ipassr: error: {message}", file=sys.stderr)
    return 2


def _describe_os_error(exc: OSError) -> str:
    """'PATH: reason' for an OSError, naming both paths of a failed rename or copy."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on the device (disk full)"
    else:
        reason = exc.strerror or str(exc)
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _terminate(signum, frame) -> None:
    """SIGTERM behaves as Ctrl-C: unwind (atomic writes delete their temp files), exit 130."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
