"""`optuna-run export`: a study's best trial as JSON, its trials as CSV or Parquet."""

from __future__ import annotations

import argparse
import sys

from search.cli.common import Parser
from search.cli.flags import add_storage, add_study_name, out_file, table_file


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="optuna-run export", description="Write a study's best trial as JSON.")
    add_study_name(p)
    p.add_argument("--out", type=out_file, required=True, help="JSON file to write")
    add_storage(p)
    p.add_argument(
        "--trials",
        type=table_file,
        default=None,
        help="also write every trial to this .csv/.parquet",
    )
    return p


def handle(args: argparse.Namespace) -> int:
    from search.api import export
    from search.study.progress import plural

    rec = export(study_name=args.study_name, out=args.out, storage=args.storage, trials=args.trials)
    if "pareto_front" in rec:
        what = f"the Pareto front ({plural(len(rec['pareto_front']), 'trial')})"
    else:
        what = f"trial {rec['trial_number']} value={rec['value']:.6g} ({rec['selected_by']})"
    print(f"wrote {args.out}: {what}", file=sys.stderr)
    if args.trials:
        print(f"wrote {args.trials}: {plural(rec['trials_written'], 'trial')}", file=sys.stderr)
    return 0
