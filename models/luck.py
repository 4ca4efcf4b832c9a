"""How much of a search's edge is luck: per-date validation values, the probability of
backtest overfitting and the deflated Sharpe ratio.

- daily_values: one value per date of the metric behind an objective (the daily IC or rank
  IC, the daily top-minus-bottom spread, the daily mean loss, ...), so that its mean over
  dates is the objective (its mean / std for icir, rank_icir and sharpe).
- pbo: combinatorially symmetric cross-validation (Bailey, Borwein, Lopez de Prado and Zhu
  2015). The (T dates x N trials) matrix is cut into S blocks of consecutive dates (sizes
  differing by at most one); for each of the C(S, S/2) halves, the trial best in-sample (by
  the mean, or the Sharpe, of its per-date values over the chosen blocks) is ranked among
  all trials out of sample (1 = worst, ties averaged), w = rank / (N + 1), logit =
  ln(w / (1 - w)); PBO is the share of halves whose logit is <= 0 (the in-sample winner
  no better than the median out of sample). The in-sample winner on a tie is the first.
- deflated_sharpe (Bailey and Lopez de Prado 2014): SR is the per-date Sharpe (mean / sample
  std, not annualised) of the winner's per-date values; SR0 = sqrt(V) * ((1 - g) *
  Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e))) the expected maximum Sharpe of N trials without
  skill (V: the sample variance of the trials' Sharpe ratios, g: Euler's constant);
  DSR = Phi((SR - SR0) * sqrt(T - 1) / sqrt(1 - skew * SR + (kurt - 1) / 4 * SR^2)), skew
  and kurt (not excess) the population moments of the winner's values. A DSR above 0.95
  says the winner's Sharpe beats what the best of N skill-less trials would show.
- effective_trials: N_eff = rho + (1 - rho) * N, rho the mean pairwise correlation of the
  trials' per-date values (clipped to [1, N]): correlated trials count as fewer.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

from data.prepared import Prepared
from models.metrics import (
    OBJECTIVES,
    _sum,
    constant_in,
    daily_corr,
    group_index,
    group_ranks,
    leg_spread,
)
from models.train import Member, TrainParams, _padded, predict_members

EULER_GAMMA = 0.5772156649015329
# metric key -> the per-date quantity whose mean (or Sharpe) is that metric
DAILY = {
    "ic": "pearson",
    "icir": "pearson",
    "rank_ic": "spearman",
    "rank_icir": "spearman",
    "spread": "spread",
    "sharpe": "spread",
    "loss": "loss",
    "mse": "loss",
    "log_loss": "loss",
    "hit_rate": "hit",
    "accuracy": "hit",
    "mse_skill": "skill",
    "r2_weighted": "skill",
    "utility": "pnl",
}
BY_SHARPE = ("icir", "rank_icir", "sharpe")  # metrics that are a mean / std over dates
# metrics where 0 means no skill: the deflated Sharpe ratio applies
ZERO_IS_NO_SKILL = (
    "ic",
    "icir",
    "rank_ic",
    "rank_icir",
    "spread",
    "sharpe",
    "mse_skill",
    "r2_weighted",
    "utility",
)


def class_score(pred: torch.Tensor) -> torch.Tensor:
    """One score per row: a regression prediction as it is; class logits as the expected
    class index (for two classes: the probability of class 1, as evaluate scores them)."""
    if pred.dim() == 1:
        return pred.double()
    k = torch.arange(pred.shape[-1], device=pred.device, dtype=torch.float64)
    return pred.double().softmax(-1) @ k


def _rowwise(kind: str, pred: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Per-row loss or hit (1 / 0; NaN where a regression target is 0)."""
    if kind == "loss":
        if task == "classification":
            return torch.nn.functional.cross_entropy(pred, y.long(), reduction="none").double()
        return (pred.double() - y.double()) ** 2
    if task == "classification":
        return (pred.argmax(-1) == y.long()).double()
    hit = (torch.sign(pred) == torch.sign(y)).double()
    return torch.where(y != 0, hit, torch.nan)


def daily_values(
    key: str,
    pred: torch.Tensor,
    y: torch.Tensor,
    date: torch.Tensor,
    w: torch.Tensor | None,
    task: str,
    panel: bool,
    min_count: int = 5,
    quantile: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(dates, values): the sorted distinct dates and the metric `key`'s value on each
    (NaN where undefined, and for IC, rank IC and spread on a panel's dates of fewer than
    `min_count` securities); None for a metric with no per-date form (auc; correlations
    of a single series)."""
    kind = DAILY.get(key)
    if kind is None or (not panel and kind in ("pearson", "spearman")):
        return None
    dates, inv = torch.unique(date, return_inverse=True)
    G = len(dates)
    counts = torch.bincount(inv, minlength=G).double()
    ww = torch.ones_like(y, dtype=torch.float64) if w is None else w.double()
    yd = y.double()
    if kind in ("loss", "hit"):
        v = _rowwise(kind, pred, y, task)
        ok = torch.isfinite(v).double() * (ww if kind == "loss" else 1.0)
        return dates, _sum(torch.nan_to_num(v) * ok, inv, G) / _sum(ok, inv, G)
    if kind == "skill":
        err = _sum(ww * (pred.double() - yd) ** 2, inv, G)
        return dates, 1 - err / _sum(ww * yd**2, inv, G)
    if kind == "pnl":
        return dates, _sum(ww * yd * (pred > 0).double(), inv, G)
    s = class_score(pred)
    if not panel:  # spread of one series: the sign strategy
        return dates, _sum(torch.sign(s) * yd, inv, G) / counts
    if kind == "pearson":
        v = daily_corr(s, yd, inv, G, scored=True)
    elif kind == "spearman":
        v = daily_corr(group_ranks(s, inv, G), group_ranks(yd, inv, G), inv, G, scored=True)
    else:
        r, n = group_ranks(s, inv, G), counts[inv]
        top, bot = r > n * (1 - quantile), r <= n * quantile
        v = leg_spread(yd, top, bot, inv, G, constant_in(s, inv, G))
    return dates, torch.where(counts >= min_count, v, torch.nan)


MEAN_OF_DAILY = ("ic", "rank_ic", "spread", "loss", "mse", "log_loss", "hit_rate", "accuracy")


def _sharpe_influence(v: torch.Tensor) -> torch.Tensor:
    """Per-date influence on mean / std of the series v (NaN kept where v is NaN)."""
    ok = v[torch.isfinite(v)]
    if ok.numel() < 2:
        return torch.full_like(v, math.nan)
    m, sd = ok.mean(), ok.std()
    z = (v - m) / sd
    return z - (m / sd) / 2 * (z * z - 1)


def influence(
    key: str,
    pred: torch.Tensor,
    y: torch.Tensor,
    date: torch.Tensor,
    w: torch.Tensor | None,
    task: str,
    panel: bool,
    periods_per_year: float = 252.0,
) -> torch.Tensor | None:
    """(D,) per-date values, in date order (NaN where a date has none), whose mean has the
    sampling noise of metric `key` of these predictions: the daily value itself for a mean
    over dates (IC, rank IC, spread, hit rate), each date's share of a loss pooled over the
    rows of a panel ((E_d - L W_d) / mean W, E_d and W_d the date's weighted loss and
    weight, L the pooled loss), the delta-method influence of each date
    for a mean / std over dates (ICIR, rank ICIR, Sharpe; annualised as `key` is:
    z - SR (z^2 - 1) / 2), and for a single series' correlation (IC, rank IC) each date's
    term z_p z_y - r (z_p^2 + z_y^2) / 2. The standard error of the mean of two predictors'
    difference (metrics.mean_se) is the paired noise of comparing them on these dates. None
    for a metric with none (AUC, skill, utility)."""
    if not panel and key in ("ic", "rank_ic"):
        s, yd = class_score(pred), y.double()
        if key == "rank_ic":
            inv = torch.zeros_like(date)
            s, yd = group_ranks(s, inv, 1), group_ranks(yd, inv, 1)
        order = torch.argsort(date, stable=True)
        s, yd = s[order], yd[order]
        if s.numel() < 3 or float(s.std()) == 0 or float(yd.std()) == 0:
            return None
        zs, zy = (s - s.mean()) / s.std(), (yd - yd.mean()) / yd.std()
        r = (zs * zy).sum() / (s.numel() - 1)
        return zs * zy - r * (zs * zs + zy * zy) / 2
    if panel and DAILY.get(key) == "loss":  # pooled over rows: each date's share of it
        e = _rowwise("loss", pred, y, task)
        ww = torch.ones_like(e) if w is None else w.double()
        inv, G = group_index(date)
        E, W = _sum(e * ww, inv, G), _sum(ww, inv, G)
        return (E - E.sum() / W.sum() * W) / W.mean()
    base = {"icir": "ic", "rank_icir": "rank_ic", "sharpe": "spread"}.get(key, key)
    if base not in MEAN_OF_DAILY:
        return None
    got = daily_values(base, pred, y, date, w, task, panel)
    if got is None:
        return None
    v = got[1]
    if key not in BY_SHARPE:
        return v
    scale = math.sqrt(periods_per_year) if key == "sharpe" else 1.0
    return _sharpe_influence(v) * scale


def _clean(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The trials (columns) finite on at least half the dates, on the dates (rows) where
    every one of them is finite; and the kept columns' indices."""
    m = np.asarray(matrix, dtype=np.float64)
    fin = np.isfinite(m)
    cols = np.flatnonzero(fin.mean(0) >= 0.5) if m.shape[0] else np.arange(0)
    rows = fin[:, cols].all(1)
    return m[rows][:, cols], cols


def _perf(total: np.ndarray, sq: np.ndarray, n: np.ndarray, by: str) -> np.ndarray:
    mean = total / n
    if by == "mean":
        return mean
    var = (sq - n * mean**2) / np.maximum(n - 1, 1)
    return mean / np.sqrt(np.maximum(var, 1e-300))


def pbo(
    matrix: np.ndarray, n_blocks: int = 16, by: str = "mean", sign: float = 1.0
) -> dict[str, Any]:
    """The probability of backtest overfitting of picking the best of the N columns of a
    (T dates x N trials) matrix (module doc). `sign` -1 for a metric to minimise."""
    if by not in ("mean", "sharpe"):
        raise ValueError(f"by: expected 'mean' or 'sharpe', not {by!r}")
    m, cols = _clean(matrix)
    T, N = m.shape
    S = min(n_blocks - n_blocks % 2, T - T % 2)
    if N < 2 or S < 2:
        return {"pbo": None, "trials": int(N), "dates": int(T), "blocks": int(max(S, 0))}
    blocks = np.array_split(np.arange(T), S)
    bsum = np.stack([m[b].sum(0) for b in blocks])  # (S, N)
    bsq = np.stack([(m[b] ** 2).sum(0) for b in blocks])
    bn = np.array([len(b) for b in blocks], dtype=np.float64)
    combos = np.array(list(itertools.combinations(range(S), S // 2)))
    logits, is_best, oos_best = [], [], []
    for chunk in np.array_split(combos, max(1, len(combos) // 2048)):
        ind = np.zeros((len(chunk), S))
        ind[np.arange(len(chunk))[:, None], chunk] = 1.0
        n_is = (ind @ bn)[:, None]
        p_is = sign * _perf(ind @ bsum, ind @ bsq, n_is, by)
        p_oos = sign * _perf((1 - ind) @ bsum, (1 - ind) @ bsq, bn.sum() - n_is, by)
        best = p_is.argmax(1)
        mine = p_oos[np.arange(len(chunk)), best][:, None]
        rank = (p_oos < mine).sum(1) + ((p_oos == mine).sum(1) + 1) / 2
        w = rank / (N + 1)
        logits.append(np.log(w / (1 - w)))
        is_best.append(sign * p_is.max(1))
        oos_best.append(sign * mine[:, 0])
    lam = np.concatenate(logits)
    return {
        "pbo": float((lam <= 0).mean()),
        "logit_median": float(np.median(lam)),
        "is_winner_mean": float(np.concatenate(is_best).mean()),
        "oos_winner_mean": float(np.concatenate(oos_best).mean()),
        "combinations": len(lam),
        "blocks": S,
        "dates": int(T),
        "trials": int(N),
        "by": by,
    }


def sharpe(values: np.ndarray) -> float:
    """Per-date Sharpe ratio: mean / sample standard deviation (not annualised)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return math.nan
    sd = v.std(ddof=1)
    return float(v.mean() / sd) if sd > 0 else math.nan


def expected_max_sharpe(sharpe_var: float, n_trials: float) -> float:
    """E[max Sharpe] of `n_trials` skill-less trials whose Sharpe ratios vary by
    `sharpe_var` (0 for one trial)."""
    if n_trials <= 1:
        return 0.0
    z = NormalDist().inv_cdf
    a = (1 - EULER_GAMMA) * z(1 - 1 / n_trials)
    return math.sqrt(sharpe_var) * (a + EULER_GAMMA * z(1 - 1 / (n_trials * math.e)))


def deflated_sharpe(
    values: np.ndarray,
    trial_sharpes: np.ndarray,
    n_trials: float | None = None,
    overlap: int = 1,
) -> dict[str, Any]:
    """The deflated Sharpe ratio of the winner's per-date `values`, given the per-date
    Sharpe ratios of every trial tried (`n_trials` defaults to their count); values whose
    forward returns overlap over `overlap` dates (the horizon) count as len / overlap."""
    v = np.asarray(values, dtype=np.float64)
    srs = np.asarray(trial_sharpes, dtype=np.float64)
    srs = srs[np.isfinite(srs)]
    N = float(len(srs) if n_trials is None else n_trials)
    T = len(v) / max(overlap, 1)
    sr = sharpe(v)
    var = float(srs.var(ddof=1)) if len(srs) > 1 else 0.0
    sr0 = expected_max_sharpe(var, N)
    d = v - v.mean()
    m2 = float((d**2).mean())
    skew = float((d**3).mean() / m2**1.5) if m2 > 0 else math.nan
    kurt = float((d**4).mean() / m2**2) if m2 > 0 else math.nan
    den = 1 - skew * sr + (kurt - 1) / 4 * sr**2
    ok = T > 1 and math.isfinite(sr) and math.isfinite(den) and den > 0
    dsr = NormalDist().cdf((sr - sr0) * math.sqrt(T - 1) / math.sqrt(den)) if ok else math.nan
    out = {"dsr": dsr, "sharpe": sr, "sharpe0": sr0, "sharpe_var": var, "skew": skew}
    out.update(kurtosis=kurt, dates=len(v), trials=N)
    if overlap > 1:
        out["overlap"] = overlap
    return {k: None if isinstance(x, float) and not math.isfinite(x) else x for k, x in out.items()}


def effective_trials(matrix: np.ndarray, n: float | None = None) -> float:
    """rho + (1 - rho) * N for the N columns of a (T x N) matrix, rho their mean pairwise
    correlation, in [1, N]; with `n`, the same rho applied to n trials (the columns a sample
    of them)."""
    m, _ = _clean(matrix)
    N = m.shape[1] if n is None else n
    if m.shape[1] < 2 or m.shape[0] < 3:
        return float(N)
    sd = m.std(0)
    c = np.corrcoef(m[:, sd > 0], rowvar=False) if (sd > 0).sum() > 1 else np.ones((1, 1))
    k = c.shape[0]
    rho = (np.nansum(c) - k) / (k * (k - 1)) if k > 1 else 1.0
    return float(min(max(rho + (1 - rho) * N, 1.0), N))


def _direction(key: str) -> float:
    for k, direction in OBJECTIVES.values():
        if k == key:
            return 1.0 if direction == "maximize" else -1.0
    raise ValueError(f"unknown metric {key!r}")


def luck_summary(
    matrix: np.ndarray,
    key: str,
    winner: int | None = None,
    n_blocks: int = 16,
    effective: bool = False,
    overlap: int = 1,
    tried: int | None = None,
) -> dict[str, Any]:
    """PBO and deflated Sharpe of selecting column `winner` (default: the best by the mean,
    or the Sharpe, of its values) among the (T dates x N trials) matrix of metric `key`'s
    per-date values. The DSR is given only for metrics where 0 means no skill (rank IC,
    spread, ...); `effective` also deflates by the effective number of trials; `overlap`:
    the dates an h-date forward return spans (the DSR counts T / overlap values); `tried`:
    the trials the selection was made among, where more than the N columns (trials pruned
    on validation were tried and rejected too: the deflation counts them, the spread of the
    trials' Sharpe ratios is the N columns')."""
    sign, by = _direction(key), ("sharpe" if key in BY_SHARPE else "mean")
    out: dict[str, Any] = {"metric": key, "pbo": pbo(matrix, n_blocks, by, sign)}
    m, cols = _clean(matrix)
    if winner is None and len(cols):
        perf = np.array([sharpe(c) for c in m.T]) if by == "sharpe" else m.mean(0)
        winner = int(cols[np.nanargmax(sign * perf)])
    out["winner"] = winner
    if key not in ZERO_IS_NO_SKILL or winner not in cols:
        out["dsr"] = None
        return out
    srs = np.array([sharpe(c) for c in m.T])
    series = m[:, int(np.flatnonzero(cols == winner)[0])]
    n = max(tried or 0, len(cols))
    out["dsr"] = deflated_sharpe(series, srs, n, overlap)
    out["dsr"]["complete"] = len(cols)
    if effective:
        n_eff = effective_trials(m, n)
        out["dsr_effective"] = deflated_sharpe(series, srs, n_eff, overlap)
    return out


def _round(v: float) -> float | None:
    return float(f"{v:.6g}") if math.isfinite(v) else None


def trial_daily(
    model: torch.nn.Module,
    data: Prepared,
    p: TrainParams,
    members: list[Member],
    key: str,
) -> dict[str, Any] | None:
    """Metric `key` on each validation date of each fold, the mean over the fold's members
    (seeds), as {"metric", "ranges": [[first, stop), ...] date indices per fold, "values":
    one per date of the ranges, 6 significant digits, None where undefined}; JSON-ready.
    None for a metric with no per-date form."""
    ends, counts = _padded(data, "val", p.time_steps, members)
    fold_t = torch.tensor([m.fold for m in members], device=data.device)
    pred = predict_members(model, data, ends, fold_t, p.time_steps, p.eval_batch_size)
    S = data.n_securities
    by_fold: dict[int, list[torch.Tensor]] = {}
    for j, (m, n) in enumerate(zip(members, counts, strict=True)):
        e = ends[j, :n]
        d, s = e // S, e % S
        w = None if data.weight is None else data.weight[d, s]
        got = daily_values(key, pred[j, :n], data.target[d, s], d, w, data.cfg.task, S > 1)
        if got is None:
            return None
        r = data.folds[m.fold].val
        dense = torch.full((len(r),), math.nan, dtype=torch.float64, device=data.device)
        dense[got[0] - r.start] = got[1]
        by_fold.setdefault(m.fold % data.n_folds, []).append(dense)
    folds = sorted(by_fold)
    values = torch.cat([torch.stack(by_fold[f]).mean(0) for f in folds]).tolist()
    ranges = [[data.folds[f].val.start, data.folds[f].val.stop] for f in folds]
    out: dict[str, Any] = {"metric": key, "ranges": ranges}
    if data.cfg.horizon > 1:  # consecutive dates' forward returns overlap (the DSR's T)
        out["horizon"] = data.cfg.horizon
    return {**out, "values": [_round(v) for v in values]}
