"""`optuna-run report`: a study's figures as one HTML file and PNGs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from search.cli.common import Parser
from search.cli.flags import _out_folder
from search.evaluate.report import ReportError, write_report


def report_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run report",
        description="Write a study's figures: one self-contained HTML file and PNGs.",
    )
    p.add_argument("--study-name", default=None, help="(default: the storage's only study)")
    p.add_argument(
        "--storage",
        default=None,
        help="storage URL (default: $OPTUNA_STORAGE, else sqlite:///studies/optuna.db)",
    )
    p.add_argument(
        "--out",
        type=_out_folder,
        default=None,
        help="folder to write (default studies/<study>-report)",
    )
    return p


def run_report(args: argparse.Namespace) -> int:
    from search.api import missing_sqlite
    from search.cli.common import fail
    from search.storage.rdb import StorageError, describe, make_storage, resolve_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_url(args.storage)
    missing = missing_sqlite(url)
    if missing:
        return fail(missing)
    try:
        storage = make_storage(url, heartbeat_interval=None)
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        name = args.study_name
        if name is None:
            if len(names) != 1:
                return fail(
                    f"--study-name: {describe(url)} holds {len(names)} studies, name one: {names}"
                )
            name = names[0]
        if name not in names:
            return fail(
                f"--study-name: no study {name!r} in {describe(url)}; studies there: {names}"
            )
        study = optuna.load_study(study_name=name, storage=storage)
        out = Path(args.out or f"studies/{name}-report")
        page, pngs = write_report(study, out)
    except (StorageError, ReportError) as e:
        return fail(str(e))
    print(f"wrote {page} and {len(pngs)} PNG figures in {out}", file=sys.stderr)
    return 0
