"""Checks of a panel as it is read: what is refused, warned about or left out."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from data.columns import Columns
from data.config import DataConfig
from data.errors import DataError, DataWarning
from data.features import lag_correlations, overlap_horizon
from data.split import make_split


def check_horizon(path: Path, cfg: DataConfig, target: str, y: np.ndarray) -> None:
    """Warn when a given target overlaps itself over more dates than `horizon` purges: its
    correlation with its later values says how many dates ahead it looks (`overlap_horizon`)."""
    rho = lag_correlations(y)
    h = overlap_horizon(rho, int((np.isfinite(y[:-1]) & np.isfinite(y[1:])).sum()))
    if h <= cfg.horizon:
        return
    gap = cfg.horizon + cfg.embargo
    warnings.warn(
        f"{path}: column {target!r} ([data] target) looks like a return over about {h} dates: "
        f"its values on consecutive dates correlate {rho[0]:.2f} (returns over h dates overlap "
        f"by h - 1 of them), but [data] horizon = {cfg.horizon}, so the purge before validation "
        f"and test drops {gap} date{'s' if gap > 1 else ''} and training labels overlap the "
        f"later segments; set [data] horizon to the target's horizon (about {h})",
        DataWarning,
        stacklevel=4,
    )


def training_dates(dates: np.ndarray, cfg: DataConfig) -> range | None:
    """The split's training dates (indices of `dates`), for the checks that look at them;
    None where the dates cannot be split (left for the split to refuse, where the panel is
    split)."""
    try:
        return make_split(dates, cfg).train
    except DataError:
        return None


def drop_constant(
    path: Path, train: range | None, values: np.ndarray, names: list[str]
) -> tuple[np.ndarray, list[str]]:
    """The features less those constant (or with no value) over the `train` dates
    (`training_dates`), which teach a model nothing, each named in a warning. The kept
    features are moved to the front of the same memory: no second (D, S, F) array is made."""
    if train is None:
        return values, names
    D, S, F = values.shape
    lo = np.full(F, np.nan, dtype=np.float32)
    hi = lo.copy()
    for d0 in range(train.start, train.stop, 16):
        block = values[d0 : min(d0 + 16, train.stop)]  # (<=16, S, F)
        lo = np.fmin(lo, np.fmin.reduce(block, axis=(0, 1)))  # NaN ignored
        hi = np.fmax(hi, np.fmax.reduce(block, axis=(0, 1)))
    drop = np.isnan(lo) | (lo == hi)
    if not drop.any():
        return values, names
    why = [
        f"{n!r} ({'no value' if np.isnan(lo[j]) else 'constant'})"
        for j, n in enumerate(names)
        if drop[j]
    ]
    s = "s" if len(why) > 1 else ""
    them = "them" if len(why) > 1 else "it"
    warnings.warn(
        f"{path}: feature column{s} {', '.join(why)} over the {len(train)} training dates "
        f"([data] features): left out, a model learns nothing from {them}",
        DataWarning,
        stacklevel=3,
    )
    keep = np.flatnonzero(~drop)
    flat = values.reshape(-1)
    k = len(keep)
    for d in range(D):  # date d's kept values end before date d + 1's start: never overwritten
        flat[d * S * k : (d + 1) * S * k] = values[d][:, keep].reshape(-1)
    return flat[: D * S * k].reshape(D, S, k), [names[j] for j in keep]


# a feature whose correlation with the target on the training dates is this strong (mean
# over dates of the per-date correlation on a panel, over the training rows on a series or a
# handful of securities) is said to be a likely leak: honest predictors of returns score well
# under 0.1 (a persistent target, volatility or volume, can reach it honestly)
LEAK_CORR = 0.5
LEAK_DATES = 100  # training dates read for it at most, evenly spaced


def warn_leaky_features(
    path: Path, train: range | None, values: np.ndarray, names: list[str], y: np.ndarray
) -> None:
    """Warn about the features that track the target far more closely than an honest
    predictor of returns does (|correlation| >= LEAK_CORR on the training dates): a later
    value or another horizon's label taken in as a feature (a pattern, `--features '*'`)
    makes every trial, and the verdict, score a leak. Reads at most LEAK_DATES training
    dates, one at a time: no copy of the (D, S, F) panel."""
    if train is None or not len(train) or not names:
        return
    D, S, F = values.shape
    step = max(1, len(train) // LEAK_DATES)
    days = range(train.start, train.stop, step)
    total, count = np.zeros(F), np.zeros(F)
    pooled = np.zeros((5, F))  # sums of x, t, xx, tt, xt over the rows (a series)
    for d in days:
        t = y[d].astype(np.float64)  # (S,)
        x = values[d].astype(np.float64)  # (S, F)
        ok = np.isfinite(x) & np.isfinite(t)[:, None]
        x, tt = np.where(ok, x, 0.0), np.where(ok, t[:, None], 0.0)
        if S < 5:  # too few securities for a per-date correlation: over the rows
            pooled += np.stack(
                [x.sum(0), tt.sum(0), (x * x).sum(0), (tt * tt).sum(0), (x * tt).sum(0)]
            )
            count += ok.sum(0)
            continue
        n = ok.sum(0)  # (F,)
        with np.errstate(invalid="ignore", divide="ignore"):
            dx = (x - x.sum(0) / n) * ok
            dt = (tt - tt.sum(0) / n) * ok
            r = (dx * dt).sum(0) / np.sqrt((dx * dx).sum(0) * (dt * dt).sum(0))
        use = (n >= 5) & np.isfinite(r)
        total += np.where(use, r, 0.0)
        count += use
    with np.errstate(invalid="ignore", divide="ignore"):
        if S >= 5:
            corr = np.where(count >= 3, total / count, np.nan)
        else:
            sx, st, sxx, stt, sxt = pooled
            cov = sxt - sx * st / count
            corr = cov / np.sqrt((sxx - sx * sx / count) * (stt - st * st / count))
            corr = np.where(count >= 10, corr, np.nan)
    leaky = [(names[j], corr[j]) for j in range(F) if abs(corr[j]) >= LEAK_CORR]
    if not leaky:
        return
    how = "mean per-date correlation" if S >= 5 else "correlation"
    shown = ", ".join(f"{n!r} ({c:+.2f})" for n, c in leaky[:10])
    warnings.warn(
        f"{path}: feature column{'s' if len(leaky) > 1 else ''} {shown}"
        f"{' ...' if len(leaky) > 10 else ''} track the target on the training dates ({how} "
        f"with it; honest predictors of returns score well under 0.1): likely a label or a "
        "later value taken in as a feature (a leak: every trial and the verdict would score "
        "it); check [data] features (--features); a persistent target (volatility, volume) "
        "can be tracked this closely honestly",
        DataWarning,
        stacklevel=3,
    )


# a regression target whose training-date standard deviation lies outside this range is
# said to be mis-sized (a raw daily return: ~0.01-0.03; a minute bar's: ~0.001)
TARGET_SD_RANGE = (0.05, 20.0)


def warn_target_size(path: Path, cfg: DataConfig, train: range | None, y: np.ndarray) -> None:
    """Warn when a regression target left at its own scale (target_cs none or demean; `y`
    after target_scale) is far from unit size on the training dates: a network fits a target of
    ~0.001 poorly (its initial outputs are ~0.1, and each step of Adam moves them by about
    the learning rate): on one S&P 500 stock's daily returns (sd 0.016) the final model's
    test MSE was 5.7 times a constant zero's, at target_scale 100 below it. Says the
    target_scale that brings it near 1. `train`: the training dates (`training_dates`)."""
    if cfg.task != "regression" or cfg.target_cs not in ("none", "demean") or train is None:
        return
    t = y[train.start : train.stop]
    t = t[np.isfinite(t)]
    if len(t) < 2:
        return
    sd = float(t.std())
    lo, hi = TARGET_SD_RANGE
    if not 0 < sd < lo and not sd > hi:
        return
    scale = float(f"{cfg.target_scale * 10.0 ** round(-math.log10(sd)):.3g}")  # y is scaled
    what = repr(cfg.target) if cfg.target else "the forward return"
    warnings.warn(
        f"{path}: the target ({what}) has a standard deviation of {sd:.3g} on the training "
        "dates: a network fits a target of that size poorly (its test MSE can end several "
        f"times a constant zero's); set [data] target_scale = {scale:g} (--target-scale "
        f"{scale:g})"
        + (', or target_cs = "zscore" or "rank" (--target-cs) on a panel' if cfg.id else ""),
        DataWarning,
        stacklevel=3,
    )


def check_weight(path: Path, cols: Columns, weight: np.ndarray | None, ok: np.ndarray) -> None:
    if weight is None:
        return
    bad = ok & ~(weight >= 0)
    if bad.any():
        raise DataError(
            f"{path}: column {cols.weight!r} ([data] weight) has {int(bad.sum())} negative "
            "or empty values on tradable rows; expected weights >= 0"
        )


def refuse_no_value(path: Path, columns: list[str], named: bool, warn: bool) -> None:
    """Refuse (or, for predictions, warn about) feature columns with no value."""
    which = (
        f"feature column {columns[0]!r}"
        if len(columns) == 1
        else f"feature columns {', '.join(map(repr, columns))}"
    )
    has = "has" if len(columns) == 1 else "have"
    if warn:
        warnings.warn(
            f"{path}: {which} ([data] features) {has} no value (every row is empty or NaN): "
            "the model sees missing values there",
            DataWarning,
            stacklevel=4,  # the caller of load_panel
        )
        return
    it = "it" if len(columns) == 1 else "them"
    how = (
        f"leave {it} out of [data] features (--features)"
        if named
        else f"name the feature columns without {it} in [data] features (--features)"
    )
    raise DataError(
        f"{path}: {which} ([data] features) {has} no value: every row is empty or NaN; "
        f"expected numbers; {how}"
    )
