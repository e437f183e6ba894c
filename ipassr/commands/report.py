"""``ipassr report RUN``: redraw a training run's curves (RUN/curves.png) from its log."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="redraw a training run's loss and validation curves",
        description="Draw RUN/curves.png from RUN/log.jsonl: the training losses, the validation "
                    "PSNR and biPAM's matches against the global step (ipassr train redraws it "
                    "at each validation).")
    parser.add_argument("run_dir", type=Path, metavar="RUN", help="a training run folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..train.report import write_report

    print(f"wrote {write_report(args.run_dir)}")
    return 0
