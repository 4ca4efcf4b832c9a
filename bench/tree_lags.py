"""Does the window carry anything the last step does not? LightGBM on the last K steps of
every feature, flattened (K x F inputs), against the same tree on the last step alone.

    python bench/tree_lags.py --data ../shared/data/cn_sse_mainboard.parquet --lags 1,5,20 \
        [--both-views]

The default study's data (extended OHLCV features, per-date ranked features and target,
time_steps 20 fixing the scored rows; with --both-views every feature also robust-scaled on
the training dates, as bench/levers.py's); the verdict's tree parameters, early-stopped on
validation, fitted on every training window. Prints validation and test rank IC per K. If
lags lift the tree little, a sequence model's only way past the tree is a better function
of the last step, not what it reads from the window.
"""

from __future__ import annotations

import argparse
import time

import lightgbm as lgb
import numpy as np
import torch
from levers import add_robust_view

from data import DataConfig, Prepared, load_panel
from models.baselines import TREE_PARAMS
from models.metrics import panel_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--lags", default="1,5,20", help="window lengths the tree reads, e.g. 1,5,20")
    ap.add_argument("--time-steps", type=int, default=20, help="fixes the rows scored")
    ap.add_argument(
        "--both-views",
        action="store_true",
        help="each feature twice: per-date ranked and robust-scaled on training dates",
    )
    a = ap.parse_args()
    lags = [int(k) for k in a.lags.split(",") if k]
    if not lags or min(lags) < 1 or max(lags) > a.time_steps:
        ap.error(f"--lags: each must be in 1..{a.time_steps} (--time-steps), got {a.lags!r}")
    cfg = DataConfig(path=a.data, normalize="cs_rank", target_cs="rank", ohlcv_set="extended")
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=a.time_steps)
    if a.both_views:
        add_robust_view(data, cfg)
    S = data.n_securities
    ends = {seg: data.ends(seg, a.time_steps) for seg in ("train", "val", "test")}

    def features(e: torch.Tensor, k: int) -> np.ndarray:
        x = torch.cat([data.batch(c, k).x for c in e.split(262_144)], 1)  # (k, B, F)
        return x.permute(1, 0, 2).reshape(len(e), -1).numpy()

    def target(e: torch.Tensor) -> np.ndarray:
        return data.target[e // S, e % S].numpy()

    params = {**TREE_PARAMS, "seed": 0}
    print(f"{a.data}: {len(ends['train']):,} training windows, {data.n_features} features")
    for k in lags:
        t0 = time.perf_counter()
        booster = lgb.train(
            params,
            lgb.Dataset(features(ends["train"], k), target(ends["train"])),
            num_boost_round=1000,
            valid_sets=[lgb.Dataset(features(ends["val"], k), target(ends["val"]))],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        ic = {}
        for seg in ("val", "test"):
            e = ends[seg]
            p = booster.predict(features(e, k), num_iteration=booster.best_iteration)
            m = panel_metrics(
                torch.as_tensor(np.asarray(p)), data.target[e // S, e % S].double(), e // S
            )
            ic[seg] = float(m["rank_ic"])
        print(
            f"last {k:>2} steps: {k * data.n_features:>4} inputs, {booster.best_iteration} rounds, "
            f"val rank IC {ic['val']:+.4f}, test rank IC {ic['test']:+.4f} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
