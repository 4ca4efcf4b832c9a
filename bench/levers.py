"""Which levers move one LSTM's test rank IC against the tree: features, budget, learning-rate
schedule, loss, a last-step skip, width.

    python bench/levers.py --data ../shared/data/cn_sse_mainboard.parquet --set extended \
        --windows 262144 --epochs 4 [--cosine] [--loss ic] [--skip] [--hidden 64] [--tree]

One network (LSTM, time_steps 20, Adam with weight decay 1e-5, batch 1024, gradient norm
clipped at 1), per-date ranked features and target, trained on `--windows` random training
windows an epoch (more than there are: every window), the best epoch on validation rank IC
kept; prints its validation and test rank IC beside ridge (and with --tree, LightGBM) on the
same rows, from the verdict. `--loss ic` trains on batches of whole dates with 1 - the mean
per-date Pearson correlation as the loss; `--skip` feeds the last step's features to the
head beside the LSTM's output; `--cosine` decays the rate to 5% over the planned steps.
"""

from __future__ import annotations

import argparse
import time

import torch

from data import DataConfig, Prepared, load_panel
from models.lstm import RecurrentNet
from models.metrics import panel_metrics
from search.evaluate.verdict import build_verdict


def corr_loss(pred, y, date_idx, n_dates):
    """1 - mean over dates of Pearson(pred, y) within the date."""
    ones = torch.ones_like(pred)
    cnt = torch.zeros(n_dates).index_add_(0, date_idx, ones)
    mp = torch.zeros(n_dates).index_add_(0, date_idx, pred) / cnt.clamp_min(1)
    my = torch.zeros(n_dates).index_add_(0, date_idx, y) / cnt.clamp_min(1)
    dp, dy = pred - mp[date_idx], y - my[date_idx]
    cov = torch.zeros(n_dates).index_add_(0, date_idx, dp * dy)
    vp = torch.zeros(n_dates).index_add_(0, date_idx, dp * dp)
    vy = torch.zeros(n_dates).index_add_(0, date_idx, dy * dy)
    c = cov / (vp * vy).clamp_min(1e-12).sqrt()
    ok = cnt > 2
    return 1 - c[ok].mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--set", default="basic")
    ap.add_argument("--loss", default="mse")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--windows", type=int, default=262144)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tree", action="store_true")
    ap.add_argument("--skip", action="store_true")
    ap.add_argument("--cosine", action="store_true")
    a = ap.parse_args()
    cfg = DataConfig(path=a.data, normalize="cs_rank", target_cs="rank", ohlcv_set=a.set)
    t0 = time.perf_counter()
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=a.steps)
    S = data.n_securities
    torch.manual_seed(a.seed)
    net = RecurrentNet(data.n_features, 1, a.hidden, 1)
    if a.skip:

        class Skip(torch.nn.Module):
            def __init__(self, F, H):
                super().__init__()
                self.rnn = torch.nn.LSTM(F, H)
                self.head = torch.nn.Linear(H + F, 1)

            def forward(self, x):
                out, _ = self.rnn(x)
                return self.head(torch.cat([out[-1], x[-1]], -1))

        net = Skip(data.n_features, a.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr, weight_decay=1e-5)
    tr = data.ends("train", a.steps)
    va = data.ends("val", a.steps)
    g = torch.Generator().manual_seed(a.seed)
    d_all = tr // S
    dates = torch.unique(d_all)
    per_date = len(tr) / len(dates)
    best = (-1.0, None, 0)
    n_steps = a.epochs * ((min(a.windows, len(tr)) + a.batch - 1) // a.batch)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_steps, eta_min=a.lr * 0.05)
        if a.cosine
        else None
    )
    for ep in range(1, a.epochs + 1):
        net.train()
        t1 = time.perf_counter()
        if a.loss == "mse":
            order = tr[torch.randperm(len(tr), generator=g)[: a.windows]]
            chunks = order.split(a.batch)
        else:  # batches of whole dates, a random subset of securities per date
            k = max(1, int(round(a.batch / per_date)))
            n_dates = int(a.windows / per_date)
            pick = dates[torch.randperm(len(dates), generator=g)[:n_dates]]
            chunks = []
            for i in range(0, len(pick), k):
                sel = torch.isin(d_all, pick[i : i + k])
                chunks.append(tr[sel])
        for e in chunks:
            b = data.batch(e, a.steps)
            out = net(b.x).squeeze(-1)
            if a.loss == "mse":
                loss = ((out - b.y) ** 2).mean()
            else:
                inv = torch.unique(e // S, return_inverse=True)[1]
                loss = corr_loss(out, b.y, inv, int(inv.max()) + 1)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            if sched is not None:
                sched.step()
        net.eval()
        with torch.inference_mode():
            p = torch.cat([net(data.batch(e, a.steps).x).squeeze(-1) for e in va.split(8192)])
        m = panel_metrics(p, data.target[va // S, va % S].double(), va // S)
        ric = float(m["rank_ic"])
        print(f"  epoch {ep} val rank ic {ric:+.4f} ({time.perf_counter() - t1:.0f}s)", flush=True)
        if ric > best[0]:
            best = (ric, {k: v.clone() for k, v in net.state_dict().items()}, ep)
    net.load_state_dict(best[1])

    def predict(ends):
        with torch.inference_mode():
            return torch.cat([net(data.batch(e, a.steps).x).squeeze(-1) for e in ends.split(8192)])

    v = build_verdict(data, predict, tree=a.tree)
    t = v["test"]
    print(
        f"{a.set} {a.loss} cos={a.cosine} skip={a.skip} h{a.hidden} w{a.windows} e{a.epochs} best ep {best[2]}: val {best[0]:+.4f} test model {t['model']['rank_ic']:+.4f}"
        + (f" lgbm {t['lgbm']['rank_ic']:+.4f}" if "lgbm" in t else "")
        + f" ridge {t['ridge']['rank_ic']:+.4f}  {time.perf_counter() - t0:.0f}s",
        flush=True,
    )


if __name__ == "__main__":
    main()
