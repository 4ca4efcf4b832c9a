"""`optuna-run export`: a study's best trial as JSON, its trials as CSV or Parquet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.cli.common import Parser
from search.cli.flags import _out_file, _table_file
from search.evaluate.export import ExportError, check_trials_path, export_best, export_trials


def export_parser() -> argparse.ArgumentParser:
    p = Parser(prog="optuna-run export", description="Write a study's best trial as JSON.")
    p.add_argument("--study-name", required=True)
    p.add_argument("--out", type=_out_file, required=True, help="JSON file to write")
    p.add_argument(
        "--storage",
        default=None,
        help="storage URL (default: $OPTUNA_STORAGE, else sqlite:///studies/optuna.db)",
    )
    p.add_argument(
        "--trials",
        type=_table_file,
        default=None,
        help="also write every trial to this .csv/.parquet",
    )
    return p


def run_export(args: argparse.Namespace) -> int:
    from data import ConfigError
    from search.api import load_existing
    from search.cli.common import fail
    from search.storage.rdb import StorageError

    try:
        # every flag is checked before anything is written (argparse checked the paths)
        if args.trials:
            check_trials_path(Path(args.trials))
            if Path(args.trials).resolve() == Path(args.out).resolve():
                raise ExportError(f"--trials {args.trials}: the same file as --out")
        study = load_existing(args.storage, args.study_name)
        rec = export_best(study, Path(args.out))
        if "pareto_front" in rec:
            what = f"the Pareto front ({len(rec['pareto_front'])} trials)"
        else:
            what = f"trial {rec['trial_number']} value={rec['value']:.6g} ({rec['selected_by']})"
        print(f"wrote {args.out}: {what}", file=sys.stderr)
        if args.trials:
            n = export_trials(study, Path(args.trials))
            print(f"wrote {args.trials}: {n} trials", file=sys.stderr)
    except (StorageError, ExportError, ConfigError) as e:
        return fail(str(e))
    return 0
