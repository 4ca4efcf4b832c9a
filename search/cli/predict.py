"""`optuna-run predict`: predictions from a saved model."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from data import ConfigError, DataError, load_panel
from search.api import DEVICES_HELP, resolve_device
from search.cli.common import Parser, fail
from search.cli.flags import _out_file


def predict_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run predict",
        description="Predict with a trained model: one row per (date, id) window end.",
    )
    p.add_argument("--model", required=True, help="checkpoint from `optuna-run train`")
    p.add_argument("--data", default=None, help="Parquet/CSV file (default: the training file)")
    p.add_argument("--out", type=_out_file, required=True, help="predictions .csv or .parquet")
    p.add_argument(
        "--dates",
        default="last",
        choices=["last", "test", "all"],
        help="last date only (a submission), the test segment, or every date",
    )
    p.add_argument("--date", default=None, help="time-axis column of --data (default: the model's)")
    p.add_argument("--id", default=None, help="security column of --data ('' for one series)")
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    return p


def run_predict(args: argparse.Namespace) -> int:
    import torch

    from data.load import DataWarning
    from search.evaluate.retrain import load_checkpoint, predict_file

    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        return fail(f"--out {out}: expected a .csv or .parquet file name")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            device = resolve_device(args.device)
            ckpt = load_checkpoint(Path(args.model))
            ckpt["data"] = with_columns(ckpt["data"], args.date, args.id)
            path = args.data or ckpt["data"]["path"]
            df = predict_file(ckpt, path, args.dates, torch.device(device))
            df = with_raw_target(df, ckpt["data"], path)
        except (ConfigError, DataError) as e:
            error: str | None = str(e)
        else:
            error = None
    # each once, one line each: the file is read twice (the model's target and the raw one)
    for w in caught or []:
        if not issubclass(w.category, DataWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    ours = (str(w.message) for w in caught or [] if issubclass(w.category, DataWarning))
    for msg in dict.fromkeys(ours):
        print(f"optuna-run: warning: {msg}", file=sys.stderr)
    if error is not None:
        return fail(error)
    from search.evaluate.export import atomic_write

    if out.suffix == ".csv":
        atomic_write(out, df.write_csv())
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        df.write_parquet(tmp)
        tmp.replace(out)
    print(f"wrote {out}: {df.height} predictions", file=sys.stderr)
    return 0


def with_columns(settings: dict[str, Any], date: str | None, ident: str | None) -> dict[str, Any]:
    """The checkpoint's data settings with the --date / --id column names of another file."""
    s = dict(settings)
    if date:
        s["date"] = date
    if ident is not None:
        s["id"] = ident or None
    return s


def with_raw_target(df: pl.DataFrame, settings: dict[str, Any], path: str) -> pl.DataFrame:
    """Add `target_raw`, the target before any transform (the given column, or the forward
    return); `target` stays what the model was trained to predict, on the model's scale
    (after the per-date transform, winsorising and scaling; class codes for classes)."""
    from search.evaluate.retrain import data_config

    raw = dict(settings, task="regression", target_cs="none", target_winsor=0.0, target_scale=1.0)
    panel = load_panel(data_config(raw, path), for_prediction=True)
    if not panel.has_target:
        return df.with_columns(pl.lit(None, dtype=pl.Float32).alias("target_raw"))
    cfg = data_config(settings, path)
    time_col = cfg.order or cfg.date
    d = np.searchsorted(panel.dates, df.get_column(time_col).to_numpy())
    if cfg.id:
        pos = {v: i for i, v in enumerate(panel.ids)}
        s = np.array([pos[v] for v in df.get_column(cfg.id).to_list()], dtype=np.int64)
    else:
        s = np.zeros(df.height, dtype=np.int64)
    return df.with_columns(
        pl.Series("target_raw", panel.target[d, s] if df.height else np.zeros(0))
    )
