"""How much of a final model's margin over the tree is the tree's own draw.

    python bench/tree_luck.py --model /tmp/pipe/final.pt [--model other.pt ...] [--seeds 5] \
        [--rows 300000,0] [--verdict-rows 300000]

The verdict's LightGBM is one draw: its training windows (every one up to FIT_ROWS, beyond
that a sample drawn with seed 0) and its bagging seeded 0. This refits it on the
checkpoints' data (their stored data settings and scored population) with seeds 0..N-1 for
each row count in --rows (0: every training window), scores each on the test dates and
sets it against each checkpoint's stored daily rank IC on the same dates: the margin and
two paired standard errors per draw, then each row count's trees' mean and standard
deviation and each model's margin against their mean. The draw the checkpoints' verdict
made (seed 0, --verdict-rows: FIT_ROWS unless the checkpoint predates it) must reproduce
the stored daily rank IC of `lgbm`, else the script stops.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from data import Prepared, load_panel
from models.baselines import FIT_ROWS, lgbm_baseline
from models.metrics import daily_rank_ic
from search.evaluate.retrain import data_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="a checkpoint (train --out)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rows", default=str(FIT_ROWS), help="row counts, e.g. 300000,0 (0: all)")
    ap.add_argument("--verdict-rows", type=int, default=FIT_ROWS)
    ap.add_argument("--data", default="", help="the data file (default: the checkpoint's)")
    a = ap.parse_args()
    ckpts = {p: torch.load(p, map_location="cpu", weights_only=True) for p in a.model}
    first = next(iter(ckpts.values()))
    for p, c in ckpts.items():
        if c["data"] != first["data"] or c["eval_time_steps"] != first["eval_time_steps"]:
            raise SystemExit(f"{p}: other data settings than {a.model[0]}; one data set per run")
    cfg = data_config(first["data"], a.data or first["data"]["path"])
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"), first["eval_time_steps"])
    S = data.n_securities
    tr, va, te = (data.ends(seg, data.eval_time_steps) for seg in ("train", "val", "test"))
    y, d = data.target[te // S, te % S].double(), te // S
    dates = [data.panel.date_str(int(x)) for x in torch.unique(d).tolist()]
    stored = {}
    for p, c in ckpts.items():
        daily = c["verdict"]["daily"]
        if daily["dates"] != dates:
            raise SystemExit(f"{p}: its test dates differ from the data's ({len(dates)} dates)")
        stored[p] = {
            k: torch.tensor([math.nan if v is None else v for v in vs], dtype=torch.float64)
            for k, vs in daily["rank_ic"].items()
        }

    counts = [int(r) for r in a.rows.split(",")]
    draws = [(s, r if 0 < r < len(tr) else len(tr)) for r in counts for s in range(a.seeds)]
    check = (0, min(a.verdict_rows, len(tr)))
    if check not in draws:
        draws.insert(0, check)
    print(
        f"{cfg.path}: {len(te):,} test windows on {len(dates)} dates, time_steps {data.eval_time_steps}"
    )
    print()
    names = [Path(p).name for p in ckpts]
    if len(set(names)) < len(names):  # the same file name in several folders: the paths
        names = list(ckpts)
    print(
        "| tree | test rank IC | " + " | ".join(f"{n}: margin (2 se)" for n in names) + " | fit |"
    )
    print("|---|---:|" + "---:|" * len(names) + "---:|")
    trees: dict[int, list[float]] = {}
    for seed, rows in draws:
        label = f"seed {seed}, {rows:,} rows" + (" (every one)" if rows == len(tr) else "")
        t0 = time.perf_counter()
        fn = lgbm_baseline(data, tr, va, seed=seed, rows=rows)
        daily = daily_rank_ic(fn(te), y, d).double()
        secs = time.perf_counter() - t0
        if (seed, rows) == check:
            ref = stored[a.model[0]]["lgbm"]
            ok = torch.isfinite(ref)
            if not torch.allclose(daily[ok], ref[ok], atol=2e-6):
                raise SystemExit("seed 0 does not reproduce the verdict's tree: other data or code")
        tree = float(daily[torch.isfinite(daily)].mean())
        trees.setdefault(rows, []).append(tree)
        cells = []
        for p in ckpts:
            diff = stored[p]["model"] - daily
            diff = diff[torch.isfinite(diff)]
            se = float(diff.std() / math.sqrt(diff.numel()))
            cells.append(f"{float(diff.mean()):+.4f} ({2 * se:.4f})")
        print(
            f"| {label} | {tree:+.4f} | " + " | ".join(cells) + f" | {secs:.0f} s |",
            flush=True,
        )
    models = {}
    for p, n in zip(ckpts, names, strict=True):
        m = stored[p]["model"]
        models[n] = float(m[torch.isfinite(m)].mean())
    print()
    for rows, vals in trees.items():
        mean = statistics.fmean(vals)
        sd = statistics.stdev(vals) if len(vals) > 1 else math.nan
        print(
            f"{len(vals)} trees on {rows:,} rows: mean {mean:+.4f}, standard deviation {sd:.4f}; "
            + ", ".join(
                f"{n} {m:+.4f}: {m - mean:+.4f} against their mean" for n, m in models.items()
            )
        )


if __name__ == "__main__":
    main()
