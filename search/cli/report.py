"""`optuna-run report`: a study's figures as one HTML file and PNGs."""

from __future__ import annotations

import argparse
import sys

from search.cli.common import Parser
from search.cli.flags import add_storage, add_study_name, out_folder


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run report",
        description="Write a study's figures: one self-contained HTML file and PNGs.",
    )
    add_study_name(p, required=False, default=None, help="(default: the storage's only study)")
    add_storage(p)
    p.add_argument(
        "--out",
        type=out_folder,
        default=None,
        help="folder to write (default studies/<study>-report)",
    )
    return p


def handle(args: argparse.Namespace) -> int:
    from search.api import report

    page, pngs = report(study_name=args.study_name, storage=args.storage, out=args.out)
    print(f"wrote {page} and {len(pngs)} PNG figures in {page.parent}", file=sys.stderr)
    return 0
