"""Latency of a live loop: one date's rows in, one prediction per security out.

    python bench/stream.py
    python bench/stream.py --widths 1000,3000 --dates 200 --runs 3 --threads 1,2 --device cpu

For each width S, a synthetic OHLCV panel of S securities (random-walk prices, about 1% of
rows absent) is written; a checkpoint is trained on its first `--train-dates` dates
(`search.run_study` of one trial, then `search.train` without the tree: features derived
from OHLCV and ranked per date, LSTM of `--hidden` units, time_steps `--time-steps`,
`--seeds` networks averaged, the final fit cut to one short epoch: its quality is not the
point, its shape is). Then, `--runs` times, a fresh `search.stream_predictor` is fed the
panel's dates one at a time: the first time_steps - 1 + OHLCV look-back dates warm it up,
the next `--dates` are timed one `predict(rows)` call each (the rows of a date are split off
the file beforehand, as an inference API hands them over). Printed per width and number of
torch threads: the median and 95th percentile of the per-date latency over every timed date
of every run, the range of the runs' medians, and for reference the median of `--runs` calls
of `search.predict(dates="last")` on the same file (the file path: reading the dates a
window needs, building their panel, predicting the last date).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

import search

STUDY = """
[study]
name = "stream{width}"
objective = "val_loss"
[data]
path = "{data}"
id = "id"
normalize = "cs_rank"
target_cs = "rank"
ohlcv_set = "{ohlcv_set}"
[budget]
max_windows_per_epoch = 2048
val_dates = 4
[final]
epochs = 1
seeds = {seeds}
max_windows_per_epoch = 4096
patience = 0
val_dates = 4
[search]
sampler = "random"
pruner = "none"
seed = 0
[space]
time_steps = {time_steps}
num_layers = 1
hidden_dim = {hidden}
head_dim = 0
dropout = 0.0
batch_size = 512
epochs = 1
"""


def write_panel(path: Path, n_ids: int, n_dates: int, seed: int = 0) -> Path:
    """Random-walk OHLCV rows of `n_ids` securities over `n_dates` dates, ~1% absent."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_dates, n_ids)), axis=0))
    opened = close * np.exp(rng.normal(0, 0.01, close.shape))
    high = np.maximum(opened, close) * (1 + np.abs(rng.normal(0, 0.01, close.shape)))
    low = np.minimum(opened, close) * (1 - np.abs(rng.normal(0, 0.01, close.shape)))
    volume = rng.integers(1_000, 100_000, close.shape).astype(float)
    start = pl.date(2015, 1, 1)
    dates = pl.date_range(start, start + pl.duration(days=n_dates - 1), eager=True)
    frame = pl.DataFrame(
        {
            "date": np.repeat(dates.to_numpy(), n_ids),
            "id": np.tile([f"S{k:05d}" for k in range(n_ids)], n_dates),
            "open": opened.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": volume.ravel(),
        }
    )
    keep = rng.random(frame.height) >= 0.01
    frame.filter(pl.Series(keep)).write_parquet(path)
    return path


def train(folder: Path, width: int, args: argparse.Namespace) -> Path:
    data = write_panel(folder / f"train{width}.parquet", width, args.train_dates, seed=1)
    toml = folder / f"stream{width}.toml"
    toml.write_text(
        STUDY.format(
            width=width,
            data=data,
            seeds=args.seeds,
            time_steps=args.time_steps,
            hidden=args.hidden,
            ohlcv_set=args.ohlcv_set,
        )
    )
    url = f"sqlite:///{folder / 'stream.db'}"
    search.run_study(config=toml, storage=url, n_trials=1, device=args.device)
    model = folder / f"stream{width}.pt"
    search.train(
        study_name=f"stream{width}", storage=url, out=model, device=args.device, tree=False
    )
    return model


def latencies(model: Path, parts: list[pl.DataFrame], warm: int, device: str) -> list[float]:
    """Seconds of each `predict` call after the first `warm` dates, one fresh predictor."""
    live = search.stream_predictor(model=model, device=device)
    out = []
    for k, rows in enumerate(parts):
        t0 = time.perf_counter()
        pred = live.predict(rows)
        if k >= warm:
            out.append(time.perf_counter() - t0)
    assert isinstance(pred, pl.DataFrame) and pred["prediction"].is_not_null().sum() > 0
    return out


def one_width(folder: Path, width: int, args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    model = train(folder, width, args)
    print(f"{width:,} securities: checkpoint trained in {time.perf_counter() - t0:.0f} s")
    live = search.stream_predictor(model=model, device=args.device)
    warm = live.history + 1
    data = write_panel(folder / f"live{width}.parquet", width, warm + args.dates, seed=2)
    parts = pl.read_parquet(data).partition_by("date", maintain_order=True)
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        runs = [latencies(model, parts, warm, args.device) for _ in range(args.runs)]
        pooled = np.array([x for r in runs for x in r]) * 1e3
        medians = [statistics.median(r) * 1e3 for r in runs]
        files = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            last = search.predict(model=model, data=data, dates="last", device=args.device)
            files.append((time.perf_counter() - t0) * 1e3)
        print(
            f"{width:>6,} securities, {threads} thread(s): per date median "
            f"{np.median(pooled):6.1f} ms, p95 {np.percentile(pooled, 95):6.1f} ms (runs' "
            f"medians {min(medians):.1f}-{max(medians):.1f} ms; {len(pooled)} dates = "
            f"{args.runs} runs x {args.dates}); {last.height:,} predictions on the last date; "
            f"predict(dates='last') on the file: median {statistics.median(files):.0f} ms",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--widths", default="1000,3000", help="securities per panel, comma-separated")
    ap.add_argument("--dates", type=int, default=200, help="timed dates per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--train-dates", type=int, default=80)
    ap.add_argument("--time-steps", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=3, help="networks averaged in the checkpoint")
    ap.add_argument("--ohlcv-set", default="basic", help="derived features: basic or extended")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads", default=str(torch.get_num_threads()), help="torch threads, e.g. 1,2"
    )
    args = ap.parse_args()
    print(
        f"torch {torch.__version__}, device {args.device}; "
        f"LSTM hidden {args.hidden}, time_steps {args.time_steps}, {args.seeds} networks, "
        f"the {args.ohlcv_set} OHLCV features ranked per date",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory() as tmp:
        for width in [int(w) for w in args.widths.split(",")]:
            one_width(Path(tmp), width, args)


if __name__ == "__main__":
    main()
