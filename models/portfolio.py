"""What a quant asks next, as functions of (prediction, target, date, security) tensors.

- per_date_rank: each prediction's rank within its date, scaled to [0, 1] (ties averaged;
  0.5 on a date of one security); blend: the mean of several predictions' per-date ranks
  (a 50/50 rank blend of two models by default);
- prediction_correlation: the mean over dates of the cross-sectional rank correlation of
  two predictions (how much of one model the other already has);
- decile_portfolio: a long-short portfolio of the top and bottom `quantile` of securities
  by prediction, equal weight (+1 long, -1 short: gross 2).

Convention for a horizon-h forward return (`fwd_return` at date d is the return from d to
d + h): the portfolio is rebalanced every h dates, on the formation dates lo, lo + h, ...
(lo the first date given), so the periods do not overlap and each period's return is
exactly the long-short mean forward return; nothing is assumed about the path inside a
period. Turnover at a rebalance is sum |w_new - w_old| over securities (a full replacement
of both legs is 4; the first rebalance builds from cash: 2); the cost of a rebalance is
cost_bps / 10_000 per unit of turnover. Sharpe: mean / std of the period returns times
sqrt(periods_per_year / h); cumulative: their sum (not compounded). A formation date with
fewer than `min_count` securities, or a leg left empty by ties, is flat (earns 0; unwinding
into it costs). A leg holds max(1, floor(n * quantile)) securities of the n on its date
(more on ties at the boundary).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from models.metrics import _sum, daily_corr, group_index, group_ranks


def per_date_rank(pred: torch.Tensor, date: torch.Tensor) -> torch.Tensor:
    """(N,) rank of each prediction within its date, (rank - 1) / (n - 1) in [0, 1]."""
    inv, G = group_index(date)
    r = group_ranks(pred.double(), inv, G)
    n = torch.bincount(inv, minlength=G).double()[inv]
    return torch.where(n > 1, (r - 1) / (n - 1).clamp_min(1), 0.5)


def blend(
    *preds: torch.Tensor, date: torch.Tensor, weights: list[float] | None = None
) -> torch.Tensor:
    """The weighted mean (equal weights by default) of the predictions' per-date ranks."""
    if not preds:
        raise ValueError("blend needs at least one prediction")
    w = weights or [1.0] * len(preds)
    if len(w) != len(preds):
        raise ValueError(f"{len(w)} weights for {len(preds)} predictions")
    ranks = torch.stack([per_date_rank(p, date) for p in preds])
    wt = torch.tensor(w, dtype=torch.float64, device=ranks.device)
    return (wt[:, None] * ranks).sum(0) / wt.sum()


def prediction_correlation(
    a: torch.Tensor, b: torch.Tensor, date: torch.Tensor, min_count: int = 5
) -> torch.Tensor:
    """Mean over dates (of at least `min_count` securities) of the Spearman correlation of
    a and b; NaN when no date qualifies."""
    inv, G = group_index(date)
    rho = daily_corr(group_ranks(a.double(), inv, G), group_ranks(b.double(), inv, G), inv, G)
    keep = (torch.bincount(inv, minlength=G) >= min_count) & torch.isfinite(rho)
    if not bool(keep.any()):
        return torch.tensor(math.nan, dtype=torch.float64, device=a.device)
    return rho[keep].mean()


def leg_weights(
    pred: torch.Tensor, date: torch.Tensor, quantile: float, min_count: int
) -> torch.Tensor:
    """(N,) weight of each row: +1 / n_long in the top leg of its date, -1 / n_short in the
    bottom one, 0 elsewhere and on dates that cannot hold both legs."""
    inv, G = group_index(date)
    r = group_ranks(pred.double(), inv, G)
    counts = torch.bincount(inv, minlength=G).double()
    k = torch.floor(counts * quantile).clamp_min(1)[inv]
    n = counts[inv]
    top, bot = (r > n - k).double(), (r <= k).double()
    nt, nb = _sum(top, inv, G), _sum(bot, inv, G)
    ok = (counts >= max(min_count, 2)) & (nt > 0) & (nb > 0)
    w = top / nt.clamp_min(1)[inv] - bot / nb.clamp_min(1)[inv]
    return torch.where(ok[inv], w, 0.0)


def _sharpe(r: torch.Tensor, per_year: float) -> torch.Tensor:
    if r.numel() < 2:
        return torch.tensor(math.nan, dtype=torch.float64, device=r.device)
    return r.mean() / r.std() * math.sqrt(per_year)


def decile_portfolio(
    pred: torch.Tensor,
    fwd_return: torch.Tensor,
    date: torch.Tensor,
    security: torch.Tensor,
    n_dates: int,
    n_securities: int,
    cost_bps: float = 10.0,
    horizon: int = 1,
    quantile: float = 0.1,
    periods_per_year: float = 252.0,
    min_count: int = 5,
) -> dict[str, Any]:
    """The long-short `quantile` portfolio rebalanced every `horizon` dates (module doc).

    `date` (0 .. n_dates - 1) and `security` (0 .. n_securities - 1) index each row.
    Returns `returns` and `returns_after_cost` (one per period, device tensors), the
    formation `dates`, and floats: cumulative, cumulative_after_cost, turnover (mean per
    rebalance), sharpe, sharpe_after_cost, periods, and the conventions used."""
    if pred.numel() == 0:
        raise ValueError("decile_portfolio needs at least one row")
    d, s = date.long(), security.long()
    lo, hi = int(d.min()), int(d.max())
    form = torch.arange(lo, hi + 1, horizon, device=d.device)  # formation dates
    rows = ((d - lo) % horizon) == 0
    W = torch.zeros((n_dates, n_securities), dtype=torch.float64, device=pred.device)
    w = leg_weights(pred[rows], d[rows], quantile, min_count)
    W[d[rows], s[rows]] = w
    ret = torch.zeros(n_dates, dtype=torch.float64, device=pred.device)
    ret.index_add_(0, d[rows], w * fwd_return[rows].double())
    Wf = W[form]
    prev = torch.cat([torch.zeros_like(Wf[:1]), Wf[:-1]])
    turnover = (Wf - prev).abs().sum(1)
    gross = ret[form]
    net = gross - cost_bps / 10_000 * turnover
    per_year = periods_per_year / horizon
    stats = torch.stack(
        [gross.sum(), net.sum(), turnover.mean(), _sharpe(gross, per_year), _sharpe(net, per_year)]
    ).tolist()
    keys = ("cumulative", "cumulative_after_cost", "turnover", "sharpe", "sharpe_after_cost")
    out: dict[str, Any] = {"returns": gross, "returns_after_cost": net, "dates": form}
    out.update(zip(keys, stats, strict=True))
    out.update(periods=len(form), cost_bps=cost_bps, horizon=horizon, quantile=quantile)
    return out


def summary(portfolio: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready part of a `decile_portfolio` result (no per-period tensors), NaN as
    None."""
    out = {}
    for k, v in portfolio.items():
        if isinstance(v, torch.Tensor):
            continue
        out[k] = None if isinstance(v, float) and not math.isfinite(v) else v
    return out
