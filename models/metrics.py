"""Evaluation as functions of (predictions, targets, dates, weights) tensors on the device.

Per-date statistics are computed with scatter/index_add over a date index, never a Python
loop over dates; the caller syncs once per epoch. Conventions:

- IC / rank IC: mean over dates of the cross-sectional Pearson / Spearman correlation
  (ties get their average rank); `*_se` is the standard error of that mean over dates
  (with `se_lag` = horizon - 1 lags of autocovariance where the forward returns of
  consecutive dates overlap: `mean_se`), `*icir` the mean over the standard deviation of
  the daily values (not annualised).
- spread: per date, the mean target of the top `quantile` of securities by prediction minus
  that of the bottom `quantile` (equal weight); `sharpe` annualises its mean / std with
  `periods_per_year` (252 / horizon). A single series uses the sign strategy sign(pred) * y.
- Dates with fewer than `min_count` securities are skipped and counted (`dates_skipped`).
- With weights w: weighted MSE, weighted R2 = 1 - sum w (y - p)^2 / sum w y^2, and the 2021
  Jane Street utility (action = pred > 0; p_i = sum_j w r a on date i;
  t = sum p_i / sqrt(sum p_i^2) * sqrt(250 / dates); u = min(max(t, 0), 6) * sum p_i).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Objective name -> (metric key, direction). `val_loss` is the training loss on validation.
OBJECTIVES: dict[str, tuple[str, str]] = {
    "val_loss": ("loss", "minimize"),
    "mse": ("mse", "minimize"),
    "mse_skill": ("mse_skill", "maximize"),
    "ic": ("ic", "maximize"),
    "rank_ic": ("rank_ic", "maximize"),
    "icir": ("icir", "maximize"),
    "rank_icir": ("rank_icir", "maximize"),
    "sharpe": ("sharpe", "maximize"),
    "spread": ("spread", "maximize"),
    "hit_rate": ("hit_rate", "maximize"),
    "r2_weighted": ("r2_weighted", "maximize"),
    "utility": ("utility", "maximize"),
    "accuracy": ("accuracy", "maximize"),
    "log_loss": ("log_loss", "minimize"),
    "auc": ("auc", "maximize"),
}
CLASSIFICATION_ONLY = ("accuracy", "log_loss", "auc")
# Computed per date across securities: undefined on a date with too few of them.
PER_DATE = ("ic", "rank_ic", "icir", "rank_icir", "spread", "sharpe")
REGRESSION_ONLY = ("mse", "mse_skill", "r2_weighted", "utility")
# the metrics of a [data] weight column: without one, r2_weighted is mse_skill again and
# utility weighs every row alike
WEIGHTED = ("r2_weighted", "utility")


def loss_fn(pred: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, task: str) -> torch.Tensor:
    """Mean (weighted) loss of the last step: MSE for regression, cross-entropy for classes."""
    if task == "classification":
        per = F.cross_entropy(pred, y.long(), reduction="none")
    else:
        per = (pred - y) ** 2
    if w is None:
        return per.mean()
    return (per * w).sum() / w.sum().clamp_min(1e-12)


def _nan(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(float("nan"), device=like.device, dtype=torch.float64)


def group_index(date: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(N,) dense group ids 0..G-1 in date order, and G."""
    _, inv = torch.unique(date, return_inverse=True)
    return inv, (int(inv.max()) + 1 if inv.numel() else 0)


def group_ranks(x: torch.Tensor, inv: torch.Tensor, n_groups: int) -> torch.Tensor:
    """1-based ranks of `x` within each group (ties get their average rank), float64."""
    n = x.numel()
    if n == 0:
        return x.double()
    o1 = torch.argsort(x, stable=True)
    order = o1[torch.argsort(inv[o1], stable=True)]  # by group, then by value
    g, v = inv[order], x[order]
    counts = torch.bincount(inv, minlength=n_groups)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(n, device=x.device) - starts[g]  # 0-based position in its group
    new = torch.ones(n, dtype=torch.bool, device=x.device)
    new[1:] = (g[1:] != g[:-1]) | (v[1:] != v[:-1])
    block = torch.cumsum(new.long(), 0) - 1  # tie block of each sorted element
    nb = int(block[-1]) + 1
    first = torch.full((nb,), n, device=x.device, dtype=torch.long)
    first = first.scatter_reduce(0, block, pos, "amin")
    last = torch.zeros(nb, device=x.device, dtype=torch.long).scatter_reduce(0, block, pos, "amax")
    avg = (first + last).double() / 2 + 1
    ranks = torch.empty(n, device=x.device, dtype=torch.float64)
    ranks[order] = avg[block]
    return ranks


def _sum(v: torch.Tensor, inv: torch.Tensor, G: int) -> torch.Tensor:
    return torch.zeros(G, device=v.device, dtype=torch.float64).index_add_(0, inv, v.double())


def daily_corr(
    a: torch.Tensor, b: torch.Tensor, inv: torch.Tensor, G: int, scored: bool = False
) -> torch.Tensor:
    """(G,) Pearson correlation of a and b within each group; NaN where one of them is
    constant (or the group has one row). `scored` (a the prediction, b the target): 0 where a
    is constant and b is not (a constant ranks nothing: it scores no skill, and the date
    stays among those every predictor is scored on, so two predictors' means and their
    paired difference cover the same dates)."""
    n = _sum(torch.ones_like(a), inv, G)
    ma, mb = _sum(a, inv, G) / n, _sum(b, inv, G) / n
    da, db = a.double() - ma[inv], b.double() - mb[inv]
    cov = _sum(da * db, inv, G)
    va, vb = _sum(da * da, inv, G), _sum(db * db, inv, G)
    r = cov / (va * vb).sqrt()
    return torch.where((va == 0) & (vb > 0), 0.0, r) if scored else r


def constant_in(x: torch.Tensor, inv: torch.Tensor, G: int) -> torch.Tensor:
    """(G,) bool: the groups in which `x` takes one value."""
    hi = torch.full((G,), -math.inf, dtype=torch.float64, device=x.device)
    lo = torch.full((G,), math.inf, dtype=torch.float64, device=x.device)
    xd = x.double()
    hi = hi.scatter_reduce(0, inv, xd, reduce="amax")
    lo = lo.scatter_reduce(0, inv, xd, reduce="amin")
    return hi == lo


def leg_spread(
    yd: torch.Tensor,
    top: torch.Tensor,
    bot: torch.Tensor,
    inv: torch.Tensor,
    G: int,
    constant: torch.Tensor,
) -> torch.Tensor:
    """(G,) mean target of the `top` rows minus that of the `bot` rows in each group; 0 in
    the groups where the prediction is `constant` (it picks nothing: scored as no skill);
    NaN where a leg is empty otherwise (ties filling a whole quantile)."""
    nt, nb = _sum(top.double(), inv, G), _sum(bot.double(), inv, G)
    yt = _sum(torch.where(top, yd, 0.0), inv, G) / nt
    yb = _sum(torch.where(bot, yd, 0.0), inv, G) / nb
    return torch.where(constant, 0.0, yt - yb)


IR_KEYS = {"ic": "icir", "rank_ic": "rank_icir", "spread": "spread_ir"}


def mean_se(v: torch.Tensor, lag: int = 0) -> torch.Tensor:
    """0-dim standard error of the mean of the series `v` (in date order; non-finite values
    dropped) whose neighbours up to `lag` apart may be correlated: the values of consecutive
    dates share lag dates of an h-date forward return when lag = h - 1. Hansen-Hodrick: the
    autocovariances up to `lag` added with weight 1 (exact for that overlap, where Bartlett
    weights would understate it), never below the plain std / sqrt(n), which lag 0 is; NaN
    with fewer than 2 values."""
    v = v[torch.isfinite(v)].double()
    n = v.numel()
    if n < 2:
        return _nan(v)
    d = v - v.mean()
    plain = (d * d).sum()
    var = plain
    for k in range(1, min(lag, n - 1) + 1):
        var = var + 2 * (d[k:] * d[:-k]).sum()
    return (torch.maximum(var, plain) / (n - 1) / n).sqrt()


def _series_stats(v: torch.Tensor, key: str, out: dict[str, torch.Tensor], se_lag: int = 0) -> None:
    """Mean, standard error (`mean_se` with `se_lag`) and mean / std of a daily series
    (finite values only)."""
    v = v[torch.isfinite(v)]
    n = v.numel()
    mean = v.mean() if n else _nan(v)
    std = v.std() if n > 1 else _nan(v)
    out[key] = mean
    out[f"{key}_se"] = mean_se(v, se_lag)
    out[IR_KEYS[key]] = mean / std if n > 1 else _nan(v)


def mean_ic(
    pred: torch.Tensor, y: torch.Tensor, date: torch.Tensor, min_count: int = 5
) -> torch.Tensor:
    """Mean over dates (with at least `min_count` securities) of the cross-sectional IC."""
    inv, G = group_index(date)
    if G == 0:
        return _nan(pred)
    ic = daily_corr(pred, y, inv, G, scored=True)
    keep = (torch.bincount(inv, minlength=G) >= min_count) & torch.isfinite(ic)
    return ic[keep].mean() if keep.any() else _nan(pred)


def corr(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p, t = pred.double() - pred.double().mean(), y.double() - y.double().mean()
    return (p * t).sum() / ((p * p).sum() * (t * t).sum()).sqrt()


def panel_metrics(
    score: torch.Tensor,
    y: torch.Tensor,
    date: torch.Tensor,
    min_count: int = 5,
    quantile: float = 0.2,
    periods_per_year: float = 252.0,
    se_lag: int = 0,
) -> dict[str, torch.Tensor]:
    """IC, rank IC (with standard errors, `mean_se` with `se_lag`, and IR), long-short
    spread and its Sharpe."""
    out: dict[str, torch.Tensor] = {}
    inv, G = group_index(date)
    if G == 0:
        for k in ("ic", "rank_ic", "spread"):
            _series_stats(score.new_zeros(0).double(), k, out)
        out["sharpe"] = out.pop("spread_ir")
        out["dates"] = torch.zeros((), device=score.device, dtype=torch.float64)
        out["dates_skipped"] = out["dates"].clone()
        return out
    counts = torch.bincount(inv, minlength=G)
    keep_date = counts >= min_count
    rows = keep_date[inv]
    out["dates"] = keep_date.sum().double()
    out["dates_skipped"] = (~keep_date).sum().double()
    ic = daily_corr(score, y, inv, G, scored=True)
    rs, ry = group_ranks(score, inv, G), group_ranks(y, inv, G)
    ric = daily_corr(rs, ry, inv, G, scored=True)
    _series_stats(ic[keep_date], "ic", out, se_lag)
    _series_stats(ric[keep_date], "rank_ic", out, se_lag)
    n = counts.double()[inv]
    top = rows & (rs > n * (1 - quantile))
    bot = rows & (rs <= n * quantile)
    spread = leg_spread(y.double(), top, bot, inv, G, constant_in(score, inv, G))[keep_date]
    _series_stats(spread, "spread", out, se_lag)
    out["sharpe"] = out.pop("spread_ir") * math.sqrt(periods_per_year)
    return out


def daily_rank_ic(
    score: torch.Tensor, y: torch.Tensor, date: torch.Tensor, min_count: int = 5
) -> torch.Tensor:
    """(G,) rank IC of each date, NaN on dates with fewer than `min_count` securities."""
    inv, G = group_index(date)
    ric = daily_corr(group_ranks(score, inv, G), group_ranks(y, inv, G), inv, G, scored=True)
    counts = torch.bincount(inv, minlength=G)
    return torch.where(counts >= min_count, ric, torch.nan)


def series_metrics(
    score: torch.Tensor, y: torch.Tensor, periods_per_year: float = 252.0
) -> dict[str, torch.Tensor]:
    """A single series: correlation, rank correlation and the sign strategy's Sharpe."""
    out = {"ic": corr(score, y)}
    if score.numel() > 1:
        inv = torch.zeros_like(score, dtype=torch.long)
        out["rank_ic"] = corr(group_ranks(score, inv, 1), group_ranks(y, inv, 1))
    else:
        out["rank_ic"] = _nan(score)
    pnl = torch.sign(score).double() * y.double()
    out["spread"] = pnl.mean() if pnl.numel() else _nan(score)
    sd = pnl.std() if pnl.numel() > 1 else _nan(score)
    out["sharpe"] = out["spread"] / sd * math.sqrt(periods_per_year)
    return out


def jane_street_utility(
    pred: torch.Tensor, y: torch.Tensor, w: torch.Tensor, date: torch.Tensor
) -> torch.Tensor:
    inv, G = group_index(date)
    if G == 0:
        return _nan(pred)
    p = _sum(w.double() * y.double() * (pred > 0).double(), inv, G)  # (G,)
    t = p.sum() / (p * p).sum().sqrt() * math.sqrt(250 / G)
    return t.nan_to_num(0.0).clamp(0.0, 6.0) * p.sum()


def auc(score: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve (Mann-Whitney, ties averaged)."""
    npos = positive.sum().double()
    nneg = positive.numel() - npos
    if npos == 0 or nneg == 0:
        return _nan(score)
    inv = torch.zeros_like(score, dtype=torch.long)
    r = group_ranks(score, inv, 1)
    return (r[positive].sum() - npos * (npos + 1) / 2) / (npos * nneg)


def evaluate(
    pred: torch.Tensor,
    y: torch.Tensor,
    date: torch.Tensor,
    w: torch.Tensor | None,
    task: str,
    panel: bool,
    periods_per_year: float = 252.0,
    min_count: int = 5,
    se_lag: int = 0,
) -> dict[str, torch.Tensor]:
    """Every metric of one segment's predictions as 0-dim device tensors (no host sync);
    `se_lag`: the autocovariance lags of the per-date standard errors (`mean_se`)."""
    out = {"loss": loss_fn(pred, y, w, task)}
    ww = torch.ones_like(y) if w is None else w
    if task == "classification":
        yl = y.long()
        out["accuracy"] = (pred.argmax(-1) == yl).double().mean()
        out["log_loss"] = out["loss"]
        prob = pred.softmax(-1)
        score = (
            prob[:, -1]
            if pred.shape[-1] == 2
            else (prob * torch.arange(pred.shape[-1], device=pred.device)).sum(-1)
        )
        out["auc"] = auc(prob[:, -1], yl == pred.shape[-1] - 1)
        out["hit_rate"] = out["accuracy"]
    else:
        score = pred
        out["mse"] = out["loss"]
        y2 = (ww.double() * y.double() ** 2).sum()
        out["mse_skill"] = 1 - (ww.double() * (pred.double() - y.double()) ** 2).sum() / y2
        out["r2_weighted"] = out["mse_skill"]
        nz = y != 0
        out["hit_rate"] = (torch.sign(pred[nz]) == torch.sign(y[nz])).double().mean()
        out["utility"] = jane_street_utility(pred, y, ww, date)
    if panel:
        out.update(
            panel_metrics(
                score,
                y.double(),
                date,
                min_count,
                periods_per_year=periods_per_year,
                se_lag=se_lag,
            )
        )
    else:
        out.update(series_metrics(score, y.double(), periods_per_year))
    return {k: v.double() if v.dtype != torch.float64 else v for k, v in out.items()}
