"""``ipassr report``: redraw a training run's loss and validation curves.

Draw RUN/curves.png from RUN/log.jsonl: the training losses, the validation PSNR and biPAM's
matches against the global step (ipassr train redraws it at each validation).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_command


def add_parser(subparsers) -> None:
    parser = add_command(subparsers, run, __doc__, weights=False)
    parser.add_argument("run_dir", type=Path, metavar="RUN", help="a training run folder")


def run(args: argparse.Namespace) -> int:
    from ..train.report import write_report

    print(f"wrote {write_report(args.run_dir)}")
    return 0
