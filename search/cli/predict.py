"""`optuna-run predict`: predictions from a saved model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.cli.common import Parser, fail
from search.cli.flags import add_device, out_file


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run predict",
        description="Predict with a trained model: one row per (date, id) window end.",
    )
    p.add_argument("--model", required=True, help="checkpoint from `optuna-run train`")
    p.add_argument("--data", default=None, help="Parquet/CSV file (default: the training file)")
    p.add_argument("--out", type=out_file, required=True, help="predictions .csv or .parquet")
    p.add_argument(
        "--dates",
        default="last",
        choices=["last", "test", "all"],
        help="last date only (a submission), the test segment, or every date",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="feed the file to the model one date at a time, as a live loop does (the same "
        "predictions; no target columns)",
    )
    p.add_argument("--date", default=None, help="time-axis column of --data (default: the model's)")
    p.add_argument("--id", default=None, help="security column of --data ('' for one series)")
    add_device(p)
    return p


def handle(args: argparse.Namespace) -> int:
    from search.api import predict

    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        return fail(f"--out {out}: expected a .csv or .parquet file name")
    # the data layer's warnings are said once each by the command line (the file is read
    # twice: the model's target and the raw one)
    df = predict(
        model=args.model,
        data=args.data,
        dates=args.dates,
        date_column=args.date,
        id_column=args.id,
        device=args.device,
        stream=args.stream,
    )
    from search.evaluate.export import atomic_write
    from search.evaluate.predict import midnight_as_dates
    from search.study.progress import plural

    if out.suffix == ".csv":
        atomic_write(out, midnight_as_dates(df).write_csv())
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        df.write_parquet(tmp)
        tmp.replace(out)
    from search.evaluate.predict import BLEND_COLUMN, TREE_COLUMN, VERDICT_ROWS

    scored = (
        f", {int(df[VERDICT_ROWS].sum()):,} of them the verdict's rows (column {VERDICT_ROWS})"
        if VERDICT_ROWS in df.columns
        else ""
    )
    if BLEND_COLUMN in df.columns:
        scored += (
            f"; beside the model's, the verdict's tree ({TREE_COLUMN}) and their 50/50 rank "
            f"blend ({BLEND_COLUMN})"
        )
    print(f"wrote {out}: {plural(df.height, 'prediction')}{scored}", file=sys.stderr)
    return 0
