"""Which levers move one LSTM's test rank IC against the tree: features, budget, learning-rate
schedule, loss, a last-step skip, width, an input encoding, a second target horizon, date-level
context, networks averaged.

    python bench/levers.py --data ../shared/data/cn_sse_mainboard.parquet --set extended \
        --windows 262144 --epochs 4 [--cosine] [--loss ic] [--skip] [--hidden 64] [--tree] \
        [--aux 5] [--members 3 [--steps-list 10,20,40]] [--normalize robust | --both-views] \
        [--embed 8 | --mlp-in 64] [--market] [--target-gauss]

One network (LSTM, time_steps 20, Adam with weight decay 1e-5, batch 1024, gradient norm
clipped at 1), per-date ranked features and target, trained on `--windows` random training
windows an epoch (more than there are: every window), the best epoch on validation rank IC
kept; prints its validation and test rank IC beside ridge (and with --tree, LightGBM) on the
same rows, from the verdict. `--loss ic` trains on batches of whole dates with 1 - the mean
per-date Pearson correlation as the loss; `--skip` feeds the last step's features to the
head beside the LSTM's output; `--cosine` decays the rate to 5% over the planned steps;
`--aux H,...` trains an output per extra horizon (the per-date ranked H-date forward return,
its MSE added to the loss) beside the 1-date one, which alone predicts; `--members N` trains N
networks (seeds seed..seed+N-1, time_steps cycled over `--steps-list`) and scores each and
their running average on the test rows of the longest time_steps, then the average in the
verdict; `--normalize` sets [data] normalize; `--both-views` gives every feature twice, ranked
per date and robust-scaled on the training dates (the baselines see both views too);
`--embed K` feeds the LSTM each ranked feature as K piecewise-linear pieces (ramps 0 -> 1 over
K equal slices of [-0.5, 0.5]: models.lstm.PiecewiseLinear, the study's `[space] input_bins`),
`--mlp-in E` a learned per-step Linear(F, E) + ReLU instead;
`--market` appends date-level context to every security's features (the cross-sectional mean
of each unranked feature and the dispersion of 1-date returns, standardised on the training
dates; the baselines see it too).
"""

from __future__ import annotations

import argparse
import time

import torch

from data import DataConfig, Prepared, load_panel
from models.lstm import PiecewiseLinear, RecurrentNet
from models.metrics import panel_metrics
from search.evaluate.verdict import build_verdict, format_next_questions


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


def training_quantiles(v: torch.Tensor, valid: torch.Tensor, dates: range) -> torch.Tensor:
    """Each feature of `v` (D, S, F) mapped through its own distribution over the valid rows of
    the training `dates` to [-0.5, 0.5] (tied quantiles share their mean position), so its
    value says where it falls among all training rows, not among its date's."""
    import numpy as np

    grid = np.linspace(-0.5, 0.5, 1001)
    rows = valid[dates.start : dates.stop]
    out = torch.empty_like(v)
    rng = np.random.default_rng(0)
    for f in range(v.shape[-1]):
        x = v[dates.start : dates.stop, :, f][rows].numpy()
        x = x[np.isfinite(x)]
        if x.size > 2_000_000:
            x = rng.choice(x, 2_000_000, replace=False)
        q = np.quantile(x, np.linspace(0, 1, 1001))
        knots, inv = np.unique(q, return_inverse=True)
        pos = np.bincount(inv, grid) / np.bincount(inv)
        vf = v[..., f].numpy()
        out[..., f] = torch.as_tensor(
            np.interp(vf, knots, pos) if len(knots) > 1 else np.zeros_like(vf)
        )
    return out


def add_robust_view(data: Prepared, cfg: DataConfig, quantile: bool = False) -> None:
    """Append to `data`'s (per-date ranked) features the same features robust-scaled (median
    and IQR of the training dates), so that every predictor reads both views; `quantile`: as
    their quantile among the training rows instead, in [-0.5, 0.5] like the ranks (the same
    order, so the same to a tree)."""
    from dataclasses import replace

    from data.normalize import apply

    rcfg = replace(cfg, normalize="robust")
    panel = load_panel(rcfg)
    r = Prepared(panel, rcfg, torch.device("cpu"), eval_time_steps=data.eval_time_steps)
    rv = apply(r.values.clone(), r.center, r.scale, r.scaler.clip)
    if quantile:
        rv = training_quantiles(rv, torch.as_tensor(panel.valid), r.split.train)
    F = data.n_features
    data.values = torch.cat([data.values, rv], -1)
    data.centers = torch.cat([data.centers, torch.zeros_like(data.centers)], -1)
    data.scales = torch.cat([data.scales, torch.ones_like(data.scales)], -1)
    data.center, data.scale = data.centers[-1], data.scales[-1]
    assert data.n_features == 2 * F


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
    ap.add_argument("--normalize", default="cs_rank", help="[data] normalize of the features")
    ap.add_argument(
        "--both-views",
        action="store_true",
        help="each feature twice: per-date ranked and robust-scaled on training dates",
    )
    ap.add_argument(
        "--quantile-view",
        action="store_true",
        help="with --both-views: the second view as each value's quantile among the training "
        "rows, in [-0.5, 0.5] (so --embed splits it into pieces too)",
    )
    ap.add_argument(
        "--embed",
        type=int,
        default=0,
        help="each ranked feature as K piecewise-linear pieces over [-0.5, 0.5] into the LSTM",
    )
    ap.add_argument(
        "--mlp-in", type=int, default=0, help="a per-step Linear(F, E) + ReLU before the LSTM"
    )
    ap.add_argument(
        "--market",
        action="store_true",
        help="date-level context beside each stock's features: the cross-sectional mean of "
        "every raw feature and the dispersion of 1-date returns, standardised on training dates",
    )
    ap.add_argument(
        "--target-gauss",
        action="store_true",
        help="the per-date ranked target as normal scores (same order, heavier tails), scaled "
        "to the ranks' spread; every predictor trains on it",
    )
    ap.add_argument("--aux", default="", help="extra target horizons trained beside 1, e.g. 5,10")
    ap.add_argument("--aux-weight", type=float, default=1.0)
    ap.add_argument("--members", type=int, default=1, help="networks averaged: seed, seed + 1, ...")
    ap.add_argument(
        "--steps-list", default="", help="time_steps cycled over the members, e.g. 10,20,40"
    )
    a = ap.parse_args()
    steps_list = [int(x) for x in a.steps_list.split(",") if x] or [a.steps]
    cfg = DataConfig(path=a.data, normalize=a.normalize, target_cs="rank", ohlcv_set=a.set)
    t0 = time.perf_counter()
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=max(steps_list))
    if a.both_views:
        add_robust_view(data, cfg, quantile=a.quantile_view)
    if a.market:  # the same date-level values for every security of a date
        from dataclasses import replace

        raw = load_panel(replace(cfg, normalize="none"))
        v = torch.as_tensor(raw.values, dtype=torch.float64)  # (D, S, F) unranked
        ok = torch.as_tensor(raw.valid)[..., None] & torch.isfinite(v)
        n = ok.sum(1).clamp_min(1)
        mean = torch.where(ok, v, 0).sum(1) / n  # (D, F)
        names = list(raw.feature_names)
        r1 = v[..., names.index("ret_1")]
        ok1 = ok[..., names.index("ret_1")]
        m1 = mean[:, names.index("ret_1")]
        disp = (torch.where(ok1, (r1 - m1[:, None]) ** 2, 0).sum(1) / n[:, 0]).sqrt()
        ctx = torch.cat([mean, disp[:, None]], 1)  # (D, F + 1)
        tr = data.split.train
        mu, sd = ctx[tr.start : tr.stop].mean(0), ctx[tr.start : tr.stop].std(0).clamp_min(1e-9)
        ctx = ((ctx - mu) / sd).clamp(-5, 5).nan_to_num(0.0).float()
        D, S0, _ = data.values.shape
        data.values = torch.cat([data.values, ctx[:, None].expand(D, S0, -1)], -1).contiguous()
        k = ctx.shape[1]
        data.centers = torch.cat([data.centers, data.centers.new_zeros(len(data.centers), k)], -1)
        data.scales = torch.cat([data.scales, data.scales.new_ones(len(data.scales), k)], -1)
        data.center, data.scale = data.centers[-1], data.scales[-1]
        print(f"market context: {k} date-level features", flush=True)
    if a.target_gauss:  # per date: rank -> (i + 0.5) / n -> normal quantile, sd of the ranks
        y = data.target
        n = torch.isfinite(y).sum(1, keepdim=True).clamp_min(2).to(y.dtype)
        u = (y + 0.5) * (n - 1) / n + 0.5 / n
        data.target = torch.special.ndtri(u) * (12**-0.5)
    S = data.n_securities
    horizons = [int(h) for h in a.aux.split(",") if h]
    # the per-date ranked h-date forward return on the same (D, S) calendar, NaN where absent
    aux_targets = [
        load_panel(
            DataConfig(
                path=a.data, normalize=a.normalize, target_cs="rank", ohlcv_set=a.set, horizon=h
            )
        ).target
        for h in horizons
    ]
    if horizons:
        aux_y = torch.stack([torch.as_tensor(t, dtype=torch.float32) for t in aux_targets], -1)

    def fwd(net, x):  # (batch, outputs), one output too
        out = net(x)
        return out[:, None] if out.dim() == 1 else out

    def train_member(seed, steps):
        torch.manual_seed(seed)
        net = RecurrentNet(data.n_features, 1 + len(horizons), a.hidden, 1)
        if a.embed:  # the product's [space] input_bins, here in front of the same network
            net = torch.nn.Sequential(
                PiecewiseLinear(a.embed),
                RecurrentNet(data.n_features * a.embed, 1 + len(horizons), a.hidden, 1),
            )
        if a.mlp_in:
            net = torch.nn.Sequential(
                torch.nn.Linear(data.n_features, a.mlp_in),
                torch.nn.ReLU(),
                RecurrentNet(a.mlp_in, 1 + len(horizons), a.hidden, 1),
            )
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
        tr = data.ends("train", steps)
        va = data.ends("val", steps)
        g = torch.Generator().manual_seed(seed)
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
                b = data.batch(e, steps)
                out = fwd(net, b.x)
                if horizons:
                    ya = aux_y[e // S, e % S]
                    ok = torch.isfinite(ya)
                    aux = ((out[:, 1:] - ya.nan_to_num()) ** 2 * ok).sum() / ok.sum().clamp_min(1)
                out = out[:, 0]
                if a.loss == "mse":
                    loss = ((out - b.y) ** 2).mean()
                    if horizons:
                        loss = loss + a.aux_weight * aux
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
                p = torch.cat([fwd(net, data.batch(e, steps).x)[:, 0] for e in va.split(8192)])
            m = panel_metrics(p, data.target[va // S, va % S].double(), va // S)
            ric = float(m["rank_ic"])
            print(
                f"  epoch {ep} val rank ic {ric:+.4f} ({time.perf_counter() - t1:.0f}s)", flush=True
            )
            if ric > best[0]:
                best = (ric, {k: v.clone() for k, v in net.state_dict().items()}, ep)
        net.load_state_dict(best[1])

        def predict(ends):
            with torch.inference_mode():
                return torch.cat([fwd(net, data.batch(e, steps).x)[:, 0] for e in ends.split(8192)])

        return predict, best

    test = data.ends("test", max(steps_list))
    y_test, d_test = data.target[test // S, test % S].double(), test // S
    preds, member_ic, members = [], [], []
    for i in range(a.members):
        steps = steps_list[i % len(steps_list)]
        predict, best = train_member(a.seed + i, steps)
        members.append(predict)
        preds.append(predict(test))
        member_ic.append(float(panel_metrics(preds[-1], y_test, d_test)["rank_ic"]))
        avg = float(panel_metrics(torch.stack(preds).mean(0), y_test, d_test)["rank_ic"])
        print(
            f"member {i} (seed {a.seed + i}, time_steps {steps}, best epoch {best[2]}): "
            f"val {best[0]:+.4f} test {member_ic[-1]:+.4f}; the {i + 1} averaged: test {avg:+.4f}",
            flush=True,
        )

    def ensemble(ends):
        return torch.stack([m(ends) for m in members]).mean(0)

    v = build_verdict(data, ensemble, member_test=member_ic if a.members > 1 else None, tree=a.tree)
    t = v["test"]
    print(
        f"{a.set} {a.normalize}{('+quantile' if a.quantile_view else '+robust') if a.both_views else ''}{'+market' if a.market else ''} {a.loss} aux={a.aux or '-'} cos={a.cosine} skip={a.skip} embed={a.embed} gauss={a.target_gauss} mlp_in={a.mlp_in} h{a.hidden} "
        f"w{a.windows} e{a.epochs} members {a.members} time_steps {a.steps_list or a.steps}: "
        f"last best ep {best[2]}: val {best[0]:+.4f} test model {t['model']['rank_ic']:+.4f}"
        + (f" lgbm {t['lgbm']['rank_ic']:+.4f}" if "lgbm" in t else "")
        + f" ridge {t['ridge']['rank_ic']:+.4f}  {time.perf_counter() - t0:.0f}s",
        flush=True,
    )
    print(v["summary"], flush=True)  # the verdict's line, the tree's paired error with it
    if v.get("next"):
        print(format_next_questions(v["next"]), flush=True)  # the 50/50 blend with the tree


if __name__ == "__main__":
    main()
