"""The final model, the tree and their blend on several test periods, through the product.

How much of an edge over the tree is one period's luck: the panel is cut at each date of
`--cuts` (the rows before it written to a file in `--workdir`), plus the whole file (unless
`--no-whole`); each is split as the product splits it (its own training, validation and test
dates) and run as a user runs it, one fixed configuration (`--config`, by default
bench/fixed_pieces.toml):

    optuna-run --config CONFIG --data FILE --storage sqlite:///WORKDIR/NAME.db --n-trials 1
    optuna-run train --study-name STUDY --storage ... --seeds SEEDS --out WORKDIR/NAME.pt
    optuna-run predict --model WORKDIR/NAME.pt --data FILE --dates test --out WORKDIR/NAME.csv

    python bench/periods.py --data ../shared/data/cn_sse_mainboard.parquet \
        --cuts 2023-06-07,2024-01-10,2024-11-26 [--seeds 1] [--workdir /tmp/periods] [--no-whole]

Then the model's, the tree's (column lgbm) and the blend's (column blend) mean daily rank IC
are recomputed with scipy from `predict`'s file over the `in_verdict` rows and checked
against the checkpoint's verdict; prints one row per period (with the paired standard errors
the verdict gives) and the margins over the tree pooled over the periods, weighted by their
dates and by their precision (the periods taken as independent).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from scipy.stats import spearmanr

from search.config.load import read_toml


def run(what: str, *args: str) -> None:
    cmd = [sys.executable, "-m", "search.cli", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"optuna-run {what} failed:\n{done.stderr[-2000:]}")


def rescored(csv: Path, date: str) -> dict[str, float]:
    """Mean daily Spearman of each column against the target over the in_verdict rows (dates
    of at least 5 rows; a date where either is constant has none, as in the verdict)."""
    df = pl.read_csv(csv).filter(pl.col("in_verdict"))
    out = {}
    for col in ("prediction", "lgbm", "blend"):
        per = [spearmanr(g[col], g["target"])[0] for _, g in df.group_by(date) if g.height >= 5]
        out[col] = float(np.nanmean(per)) if per else math.nan
    return out


def period(name: str, data: Path, cfg: Path, study: str, date: str, seeds: int, work: Path) -> dict:
    db, model, csv = (work / f"{name}{ext}" for ext in (".db", ".pt", ".csv"))
    for old in (db, model, csv):  # a new study each run: one trial, its own seed
        old.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    run("search", "--config", str(cfg), "--data", str(data), "--storage", url, "--n-trials", "1")
    train = ["train", "--study-name", study, "--storage", url, "--out", str(model)]
    run("train", *train, "--seeds", str(seeds), "--quiet")
    predict = ["predict", "--model", str(model), "--data", str(data), "--dates", "test"]
    run("predict", *predict, "--out", str(csv))
    v = torch.load(model, weights_only=True)["verdict"]
    got = rescored(csv, date)
    want = {
        "prediction": v["test"]["model"]["rank_ic"],
        "lgbm": v["test"]["lgbm"]["rank_ic"],
        "blend": v["next"]["rank_ic"]["blend"],
    }
    for k, w in want.items():
        if w is None or not math.isfinite(got[k]) or abs(got[k] - w) > 1e-5:
            sys.exit(f"{name}: {k} rescored {got[k]:+.6f} from predict's file, verdict {w}")
    dates = v["daily"]["dates"]
    return {
        "name": name,
        "dates": f"{dates[0]} to {dates[-1]}",
        "n": len(dates),
        "val": v["val"]["model"]["rank_ic"],
        "model": want["prediction"],
        "tree": want["lgbm"],
        "blend": want["blend"],
        "tree_margin": v["tree"]["margin"],
        "tree_se": v["tree"]["paired_se"],
        "blend_margin": v["next"]["blend_margin"],
        "blend_se": v["next"]["blend_paired_se"],
        "corr": v["next"]["correlation"],
    }


def _se(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def pooled(rows: list[dict[str, Any]], key: str, weights: list[float]) -> tuple[float, float]:
    """The weighted mean of the periods' margins over the tree and its standard error."""
    w = sum(weights)
    mean = sum(wi * r[f"{key}_margin"] for wi, r in zip(weights, rows, strict=True)) / w
    se = math.sqrt(sum((wi * r[f"{key}_se"]) ** 2 for wi, r in zip(weights, rows, strict=True)))
    return mean, se / w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a panel file (Parquet)")
    ap.add_argument("--cuts", default="", help="dates, comma-separated: one period each")
    ap.add_argument("--config", type=Path, default=Path(__file__).with_name("fixed_pieces.toml"))
    ap.add_argument("--seeds", type=int, default=1, help="networks per final fit")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/periods"))
    ap.add_argument("--no-whole", action="store_true", help="the cuts' periods only")
    args = ap.parse_args()
    toml = read_toml(args.config)
    study, date_col = toml["study"]["name"], toml["data"].get("date", "date")
    kind = pl.scan_parquet(args.data).collect_schema().get(date_col)
    if kind is None or (args.cuts and not (kind == pl.Date or isinstance(kind, pl.Datetime))):
        sys.exit(f"{args.data}: --cuts needs a date column {date_col!r} of dates, got {kind}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, Path]] = []
    lf = pl.scan_parquet(args.data)
    for cut in filter(None, args.cuts.split(",")):
        day = dt.date.fromisoformat(cut.strip())
        out = args.workdir / f"before_{day}.parquet"
        lf.filter(pl.col(date_col) < pl.lit(day).cast(kind)).sink_parquet(out)
        files.append((f"before_{day}", out))
    if not args.no_whole:
        files.append(("whole_file", args.data))
    if not files:
        sys.exit("--no-whole needs --cuts: no period to run")
    rows = []
    for name, path in files:
        print(f"{name}: searching, training and predicting ...", file=sys.stderr, flush=True)
        rows.append(period(name, path, args.config, study, date_col, args.seeds, args.workdir))
        r = rows[-1]
        print(
            f"| {r['dates']} ({r['n']} dates) | {r['val']:+.4f} | {r['model']:+.4f} | "
            f"{r['tree']:+.4f} | {r['blend']:+.4f} | {r['tree_margin']:+.4f} "
            f"({_se(r['tree_se'])}) | {r['blend_margin']:+.4f} ({_se(r['blend_se'])}) | "
            f"{r['corr']:.2f} |",
            flush=True,
        )
    for key, label in (("tree", "LSTM minus tree"), ("blend", "blend minus tree")):
        judged = [r for r in rows if r[f"{key}_se"]]  # a period without a standard error: out
        if not judged:
            continue
        m, se = pooled(judged, key, [r["n"] for r in judged])
        mp, sep = pooled(judged, key, [1 / r[f"{key}_se"] ** 2 for r in judged])
        print(
            f"{label}, pooled by dates: {m:+.4f} (se {se:.4f}, {m / se:.1f} se); "
            f"by precision: {mp:+.4f} (se {sep:.4f}, {mp / sep:.1f} se)"
        )
    print("every rank IC recomputed from predict's file equals the verdict's (to 1e-5)")


if __name__ == "__main__":
    main()
