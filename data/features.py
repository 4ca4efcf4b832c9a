"""Past-only features and forward-return targets, computed on the dense (D, S) calendar.

Working on the dense calendar (not row by row) means a return across a missing day is NaN,
not a multi-day move passed off as a one-day one, and a label is valid only when the
security trades `horizon` dates later.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator

import numpy as np

# The derived sets: "basic" (short horizons) and "extended" (basic + longer horizons, volume
# against its own level, the place in the 20-date range, illiquidity).
OHLCV_BASIC = ("ret_1", "ret_5", "ret_20", "hl_range", "oc_ret", "vol_chg", "volat_20")
OHLCV_LONG = ("ret_10", "ret_60", "volat_60", "vol_rel_20", "hi_20", "lo_20", "illiq_20")
OHLCV_SETS = {"basic": OHLCV_BASIC, "extended": OHLCV_BASIC + OHLCV_LONG}
OHLCV_FEATURES = OHLCV_BASIC + OHLCV_LONG  # every name derived from OHLCV
# Dates before its own that each derived feature reads (volat_20: 20 one-date returns, the
# first of which reads the date before them).
LOOKBACK = {
    "ret_1": 1,
    "ret_5": 5,
    "ret_20": 20,
    "hl_range": 0,
    "oc_ret": 0,
    "vol_chg": 1,
    "volat_20": 20,
    "ret_10": 10,
    "ret_60": 60,
    "volat_60": 60,
    "vol_rel_20": 19,
    "hi_20": 19,
    "lo_20": 19,
    "illiq_20": 20,
}
# The roles beyond close that a feature needs.
OHLCV_NEEDS = {
    "hl_range": {"high", "low"},
    "oc_ret": {"open"},
    "vol_chg": {"volume"},
    "vol_rel_20": {"volume"},
    "hi_20": {"high"},
    "lo_20": {"low"},
    "illiq_20": {"volume"},
}


def ohlcv_lookback(names: Iterable[str]) -> int:
    """Dates before a window's first date that its derived features among `names` read."""
    return max((LOOKBACK[n] for n in names if n in LOOKBACK), default=0)


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(x)
    out[~np.isfinite(out)] = np.nan
    return out


def _lag(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    out[k:] = x[:-k]
    return out


def _window_sums(x: np.ndarray, w: int, *planes: np.ndarray) -> list[np.ndarray]:
    """Over the last `w` dates (this one included): the count of finite values of `x`, then
    the sum of each of `planes` (arrays of x's shape, 0 where x is not finite)."""
    hi = np.arange(1, len(x) + 1)
    lo = np.maximum(hi - w, 0)
    out = []
    for v in (np.isfinite(x), *planes):
        c = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:]), v]), axis=0)
        out.append(c[hi] - c[lo])
    return out


def _rolling_std(x: np.ndarray, w: int, min_count: int) -> np.ndarray:
    """Std over the last `w` dates (this one included), ignoring NaN; NaN below min_count."""
    z = np.where(np.isfinite(x), x, 0.0)
    n, s1, s2 = _window_sums(x, w, z, z * z)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / n
        var = s2 / n - mean * mean
    out = np.sqrt(np.maximum(var, 0.0))
    out[n < min_count] = np.nan
    return out


def _rolling_mean(x: np.ndarray, w: int, min_count: int) -> np.ndarray:
    """Mean over the last `w` dates (this one included), ignoring NaN; NaN below min_count."""
    n, s = _window_sums(x, w, np.where(np.isfinite(x), x, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = s / n
    out[n < min_count] = np.nan
    return out


def _rolling_max(x: np.ndarray, w: int) -> np.ndarray:
    """Max over the last `w` dates (this one included), ignoring NaN (NaN when all are)."""
    out = x.copy()
    for k in range(1, min(w, len(x))):
        np.fmax(out[k:], x[:-k], out=out[k:])
    return out


def ohlcv_feature_names(roles: Iterable[str], which: str) -> list[str]:
    """Names of the features `ohlcv_features` derives (set `which`) from the roles present."""
    have = set(roles)
    return [n for n in OHLCV_SETS[which] if OHLCV_NEEDS.get(n, set()) <= have]


def ohlcv_features(ohlcv: dict[str, np.ndarray], which: str) -> Iterator[tuple[str, np.ndarray]]:
    """Features from dense (D, S) float64 OHLCV arrays (NaN where absent); all past-only.

    Yields (name, (D, S) array) in the order of `ohlcv_feature_names`, one at a time, so the
    caller can store each before the next is computed. Price levels themselves are not
    features: adjusted prices encode later corporate actions. Non-finite results (log of a
    zero volume, say) become NaN.
    """
    names = set(ohlcv_feature_names(ohlcv, which))
    lc = _log(ohlcv["close"])
    r1 = _finite(lc - _lag(lc, 1))
    yield "ret_1", r1
    yield "ret_5", _finite(lc - _lag(lc, 5))
    yield "ret_20", _finite(lc - _lag(lc, 20))
    if "hl_range" in names:
        yield "hl_range", _finite(_log(ohlcv["high"]) - _log(ohlcv["low"]))
    if "oc_ret" in names:
        yield "oc_ret", _finite(lc - _log(ohlcv["open"]))
    lv = _log(ohlcv["volume"]) if "volume" in ohlcv else None
    if "vol_chg" in names and lv is not None:
        yield "vol_chg", _finite(lv - _lag(lv, 1))
    yield "volat_20", _rolling_std(r1, 20, 10)
    if which == "basic":
        return
    yield "ret_10", _finite(lc - _lag(lc, 10))
    yield "ret_60", _finite(lc - _lag(lc, 60))
    yield "volat_60", _rolling_std(r1, 60, 30)
    if lv is not None:  # volume against its own 20-date mean (in logs)
        yield "vol_rel_20", _finite(lv - _rolling_mean(lv, 20, 10))
    if "hi_20" in names:  # below the 20-date high, above the 20-date low (in logs)
        yield "hi_20", _finite(lc - _rolling_max(_log(ohlcv["high"]), 20))
    if "lo_20" in names:
        yield "lo_20", _finite(lc + _rolling_max(-_log(ohlcv["low"]), 20))
    if lv is not None:  # Amihud: mean |return| per unit of traded value, in logs
        with np.errstate(divide="ignore", invalid="ignore"):
            per_value = np.abs(r1) / np.exp(lc + lv)
        yield "illiq_20", _log(_rolling_mean(_finite(per_value), 20, 10))


def _finite(x: np.ndarray) -> np.ndarray:
    x[~np.isfinite(x)] = np.nan
    return x


def forward_return(close: np.ndarray, ok: np.ndarray, horizon: int) -> np.ndarray:
    """Return from close[d] to close[d + horizon]; NaN unless the security trades at both."""
    c = np.where(ok & (close > 0), close, np.nan)
    out = np.full(c.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:-horizon] = c[horizon:] / c[:-horizon] - 1.0
    return out


def cs_rank(x: np.ndarray) -> np.ndarray:
    """Per-column rank of a (S,) or (S, F) slice scaled to [-0.5, 0.5], NaN kept; tied values
    share their average rank (as the metrics' rank IC ranks them), so the order of the rows
    never decides a rank."""
    x = np.asarray(x)
    if x.size == 0:
        return np.full(x.shape, np.nan)
    flat = x.reshape(len(x), -1)  # (S, F)
    S = len(flat)
    ok = np.isfinite(flat)
    key = np.where(ok, flat, np.inf)
    order = np.argsort(key, axis=0, kind="stable")
    v = np.take_along_axis(key, order, axis=0)
    pos = np.broadcast_to(np.arange(S)[:, None], v.shape)
    starts = np.ones(v.shape, dtype=bool)
    starts[1:] = v[1:] != v[:-1]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=0)  # of each value's run
    ends = np.ones(v.shape, dtype=bool)
    ends[:-1] = starts[1:]
    last = np.minimum.accumulate(np.where(ends, pos, S)[::-1], axis=0)[::-1]
    ranks = np.empty(v.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0, axis=0)
    n = ok.sum(axis=0)
    scaled = np.where(n > 1, ranks / np.maximum(n - 1, 1) - 0.5, 0.0)
    return np.where(ok, scaled, np.nan).reshape(x.shape)


def transform_target(y: np.ndarray, cs: str, winsor: float, scale: float) -> np.ndarray:
    """Per-date (row) winsorising, cross-sectional transform and scaling of a (D, S) target."""
    y = y.astype(np.float64, copy=True)
    if winsor > 0:
        for d in range(len(y)):
            row = y[d]
            ok = np.isfinite(row)
            if ok.sum() >= 3:
                lo, hi = np.quantile(row[ok], [winsor, 1 - winsor])
                row[ok] = np.clip(row[ok], lo, hi)
    if cs != "none":
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if cs == "demean":
                y = y - np.nanmean(np.where(np.isfinite(y), y, np.nan), axis=1, keepdims=True)
            elif cs == "zscore":
                m = np.nanmean(y, axis=1, keepdims=True)
                s = np.nanstd(y, axis=1, keepdims=True)
                y = np.where(s > 0, (y - m) / np.where(s > 0, s, 1.0), 0.0 * y)
            elif cs == "rank":
                y = np.stack([cs_rank(row) for row in y])
    return y * scale


def class_target(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Up/down (2) or per-date quantile classes as float codes, NaN where y is NaN."""
    ok = np.isfinite(y)
    if n_classes == 2:
        out = (y > 0).astype(np.float64)
    else:
        r = np.stack([cs_rank(row) for row in y]) + 0.5  # [0, 1]
        out = np.minimum(np.floor(r * n_classes), n_classes - 1)
    out[~ok] = np.nan
    return out


def lag_correlations(y: np.ndarray, max_lag: int = 40) -> np.ndarray:
    """(L,) pooled correlation of a (D, S) series with itself k = 1..L dates later, each
    security centred on its own mean (L = max_lag, at most a quarter of the dates)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a security with no value
        z = y - np.nanmean(y, axis=0)
    z = np.nan_to_num(z, nan=0.0)  # a missing value adds nothing to the sums
    out = np.full(max(min(max_lag, len(z) // 4), 0), np.nan)
    for k in range(1, len(out) + 1):
        a, b = z[:-k], z[k:]
        den = math.sqrt(float(np.vdot(a, a)) * float(np.vdot(b, b)))
        out[k - 1] = float(np.vdot(a, b)) / den if den > 0 else np.nan
    return out


def overlap_horizon(rho: np.ndarray, n_pairs: int) -> int:
    """The horizon h whose forward returns best explain the lag correlations `rho` (lags
    1..L): h-date returns on consecutive dates share h - k of their h dates at lag k, so
    rho_k = max(0, 1 - k / h). Least squares over h = 1..4L. 1 when `rho` is too short, its
    lag-1 value within noise (3 / sqrt(n_pairs), the pairs of values it is computed on) or
    the best h the longest tried (a level that persists, not an overlap of returns)."""
    if len(rho) < 2 or not np.isfinite(rho).all() or rho[0] < 3 / math.sqrt(max(n_pairs, 1)):
        return 1
    k = np.arange(1, len(rho) + 1)
    tried = range(1, 4 * len(k) + 1)
    errors = [float(((rho - np.maximum(0.0, 1.0 - k / h)) ** 2).sum()) for h in tried]
    best = int(np.argmin(errors)) + 1
    return 1 if best == tried[-1] else best
