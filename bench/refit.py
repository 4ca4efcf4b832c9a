"""Does fitting on the validation dates too move the network against the tree?

The final fit learns from the training dates only: the validation dates (the 15% just before
the test period, the most recent history a model could learn from) pick its best epoch and
nothing else. This measures what a refit on training + validation dates gives each predictor
on the test dates, with every choice made before the refit:

    python bench/refit.py --data ../shared/data/cn_sse_mainboard.parquet [--seed 0] \
        [--bins 16] [--epochs 8]

1. The network of bench/fixed_pieces.toml (LSTM, hidden 32, time_steps 20, each per-date
   ranked feature as `--bins` piecewise-linear pieces, Adam 3e-3 with weight decay 1e-5,
   batch 1,024, gradient norm clipped at 1, the rate decayed on a cosine to 5% over `--epochs`
   epochs of every training window), fitted on the training windows, its best epoch E chosen
   on validation rank IC: the final fit as `optuna-run train` makes it (one seed).
2. The same network, same seed, refitted on every window ending on a training or validation
   date (the purge before the test period kept), its rate on the same cosine planned over
   `--epochs` epochs of those windows, stopped after E epochs.
3. The tree (the verdict's LightGBM), early-stopped on validation at R rounds; refitted on
   training + validation windows with R rounds, and with R scaled by the windows' ratio.
4. Ridge, its penalty picked on validation; refitted on training + validation, its penalty
   picked on validation again (rows the refit now fits).

Prints each predictor's test rank IC before and after the refit, and the network minus the
tree with 2 paired standard errors (the verdict's: over the test dates' daily rank IC).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from data import DataConfig, Prepared, load_panel
from models.baselines import TREE_PARAMS, last_step, ridge_baseline
from models.lstm import RecurrentNet
from models.metrics import daily_rank_ic, panel_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bins", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=1024)
    a = ap.parse_args()
    t0 = time.perf_counter()
    cfg = DataConfig(path=a.data, normalize="cs_rank", target_cs="rank", ohlcv_set="extended")
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=a.steps)
    S = data.n_securities
    sp = data.split
    train = data.ends("train", a.steps)
    val = data.ends("val", a.steps)
    test = data.ends("test", a.steps)
    # every window ending on a training, purge or validation date: the refit's rows
    both = torch.as_tensor(data.windows.ends(a.steps, range(0, sp.val.stop), 1))
    dates = data.panel.dates
    print(
        f"{a.data}: train {dates[sp.train.start]}..{dates[sp.train.stop - 1]} "
        f"({len(train):,} windows), validation {dates[sp.val.start]}..{dates[sp.val.stop - 1]} "
        f"({len(val):,}), test {dates[sp.test.start]}..{dates[sp.test.stop - 1]} "
        f"({len(test):,}); refit on {len(both):,} windows",
        flush=True,
    )
    y_test = data.target[test // S, test % S].double()
    d_test = test // S

    def rank_ic(p: torch.Tensor, ends: torch.Tensor) -> float:
        y = data.target[ends // S, ends % S].double()
        return float(panel_metrics(p.double(), y, ends // S)["rank_ic"])

    def predictor(net: torch.nn.Module):
        def predict(ends: torch.Tensor) -> torch.Tensor:
            net.eval()
            with torch.inference_mode():
                return torch.cat([net(data.batch(e, a.steps).x) for e in ends.split(8192)])

        return predict

    def fit(rows: torch.Tensor, stop_after: int | None) -> tuple[torch.nn.Module, int, float]:
        """Train on `rows`; keep the best validation epoch, or stop after `stop_after`."""
        torch.manual_seed(a.seed)
        net = RecurrentNet(data.n_features, 1, a.hidden, 1, input_bins=a.bins)
        opt = torch.optim.Adam(net.parameters(), lr=a.lr, weight_decay=1e-5)
        per_epoch = (len(rows) + a.batch - 1) // a.batch
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, a.epochs * per_epoch, eta_min=a.lr * 0.05
        )
        g = torch.Generator().manual_seed(a.seed)
        best: tuple[float, dict | None, int] = (-math.inf, None, 0)
        for ep in range(1, (stop_after or a.epochs) + 1):
            net.train()
            t1 = time.perf_counter()
            for e in rows[torch.randperm(len(rows), generator=g)].split(a.batch):
                b = data.batch(e, a.steps)
                loss = ((net(b.x) - b.y) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                sched.step()
            v = rank_ic(predictor(net)(val), val)
            tag = " (in the refit's rows)" if stop_after else ""
            print(
                f"  epoch {ep}: validation rank IC {v:+.4f}{tag} ({time.perf_counter() - t1:.0f} s)",
                flush=True,
            )
            if stop_after is None and v > best[0]:
                best = (v, {k: t.clone() for k, t in net.state_dict().items()}, ep)
        if stop_after is None:
            assert best[1] is not None
            net.load_state_dict(best[1])
            return net, best[2], best[0]
        return net, stop_after, math.nan

    print("the network on the training dates:", flush=True)
    net_a, E, val_a = fit(train, None)
    print(f"the network on training + validation dates, stopped after epoch {E}:", flush=True)
    net_b, _, _ = fit(both, E)

    import lightgbm as lgb

    def tree_rows(ends: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return last_step(data, ends).numpy(), data.target[ends // S, ends % S].numpy()

    params = {**TREE_PARAMS, "seed": 0, "num_threads": 0}
    X, y = tree_rows(train)
    Xv, yv = tree_rows(val)
    tree_a = lgb.train(
        params,
        lgb.Dataset(X, y),
        num_boost_round=1000,
        valid_sets=[lgb.Dataset(Xv, yv)],
        callbacks=[lgb.early_stopping(50, verbose=False)],
    )
    R = tree_a.best_iteration
    Xb, yb = tree_rows(both)
    R2 = int(round(R * len(both) / len(train)))
    tree_b = lgb.train(params, lgb.Dataset(Xb, yb), num_boost_round=R)
    tree_b2 = lgb.train(params, lgb.Dataset(Xb, yb), num_boost_round=R2)
    ridge_a = ridge_baseline(data, train, val)
    ridge_b = ridge_baseline(data, both, val)  # its penalty read on rows it now fits

    def tree_pred(booster, it: int | None = None) -> torch.Tensor:
        x = last_step(data, test).numpy()
        return torch.as_tensor(np.asarray(booster.predict(x, num_iteration=it), dtype=np.float32))

    preds = {
        "LSTM": predictor(net_a)(test),
        "LSTM refit": predictor(net_b)(test),
        "tree": tree_pred(tree_a, R),
        "tree refit (R rounds)": tree_pred(tree_b),
        f"tree refit ({R2} rounds)": tree_pred(tree_b2),
        "ridge": ridge_a(test),
        "ridge refit": ridge_b(test),
    }
    daily = {k: daily_rank_ic(p, y_test, d_test) for k, p in preds.items()}
    print(f"\nbest epoch E = {E} (validation {val_a:+.4f}); tree rounds R = {R}\n")
    print("| predictor | test rank IC | minus the tree of the same rows (2 paired se) |")
    print("|---|---:|---:|")
    for k, p in preds.items():
        ref = "tree refit (R rounds)" if "refit" in k else "tree"
        diff = daily[k] - daily[ref]
        diff = diff[torch.isfinite(diff)]
        se = float(diff.std() / math.sqrt(diff.numel()))
        vs = "" if k.startswith("tree") else f"{float(diff.mean()):+.4f} ({2 * se:.4f})"
        print(f"| {k} | {rank_ic(p, test):+.4f} | {vs} |")
    for a_, b_ in (("LSTM refit", "LSTM"), ("tree refit (R rounds)", "tree")):
        diff = daily[a_] - daily[b_]
        diff = diff[torch.isfinite(diff)]
        se = float(diff.std() / math.sqrt(diff.numel()))
        print(f"{a_} minus {b_}: {float(diff.mean()):+.4f} (2 paired se {2 * se:.4f})")
    print(f"{time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
