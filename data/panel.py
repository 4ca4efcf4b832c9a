"""The dense panel: a long file pivoted once into values[D, S, F], target[D, S], valid[D, S]."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data.config import DataConfig
from data.errors import DataError
from data.features import class_target, cs_rank, forward_return, ohlcv_features, transform_target
from data.load import read_dense, read_index, resolve_columns, scan


@dataclass
class Panel:
    """Raw (not normalised) dense data. Rows absent from the file are NaN and invalid."""

    values: np.ndarray  # (D, S, F) float32, raw features
    target: np.ndarray  # (D, S) float32, NaN where there is no label (class codes if classes)
    valid: np.ndarray  # (D, S) bool, usable as a window step: traded, features mostly present
    dates: np.ndarray  # (D,)
    ids: np.ndarray  # (S,) str
    feature_names: list[str]
    weight: np.ndarray | None = None  # (D, S) float32
    source: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        D, S, F = self.values.shape
        return D, S, F

    @property
    def labelled(self) -> np.ndarray:
        """(D, S) bool: a window may end here (valid row with a finite target)."""
        return self.valid & np.isfinite(self.target)

    def date_str(self, d: int) -> str:
        return str(self.dates[d])[:19]


def file_digest(path: Path) -> str:
    """Content hash of a file (blake2b, 1 MiB blocks)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def fingerprint(cfg: DataConfig) -> str:
    """Hash of the input file's content and every data setting: same data, same fingerprint."""
    settings = json.dumps(cfg.settings(), sort_keys=True, default=str)
    return hashlib.blake2b(
        (file_digest(cfg.file) + settings).encode(), digest_size=12
    ).hexdigest()


def load_panel(cfg: DataConfig) -> Panel:
    """Read, check and pivot the file described by `cfg` into a Panel."""
    path = cfg.file
    lf = scan(path)
    cols = resolve_columns(cfg, lf.collect_schema())
    index = read_index(lf, cols, path)
    D, S = len(index.dates), len(index.ids)
    if S == 1 and (cfg.target_cs != "none" or (cfg.task == "classification" and cfg.n_classes > 2)):
        raise DataError(
            f"{path}: a single series has one value per date, so [data] target_cs = "
            f"{cfg.target_cs!r} / per-date quantile classes cannot apply; use a panel ([data] id)"
        )

    present = np.zeros((D, S), dtype=bool)
    present[index.di, index.si] = True
    ok = present.copy()
    if cols.tradable:
        trad = read_dense(lf, [cols.tradable], index, path)[:, :, 0]
        ok &= trad == 1  # absent rows are NaN, hence not tradable
    names: list[str] = []
    n_feat = len(cols.features)
    derived: tuple[list[str], list[np.ndarray]] = ([], [])
    close = None
    if cols.ohlcv:
        roles = list(cols.ohlcv)
        dense = read_dense(lf, [cols.ohlcv[r] for r in roles], index, path, dtype=np.float64)
        arrays = {r: np.where(ok, dense[:, :, j], np.nan) for j, r in enumerate(roles)}
        del dense
        close = arrays["close"]
        if cols.derive:
            derived = ohlcv_features(arrays)
        del arrays
    names = derived[0] + list(cols.features)
    values = np.full((D, S, len(names)), np.nan, dtype=np.float32)
    for j, x in enumerate(derived[1]):
        values[:, :, j] = x
    derived = ([], [])
    if n_feat:
        read_dense(lf, list(cols.features), index, path, out=values[:, :, len(names) - n_feat :])

    if cols.target:
        y = read_dense(lf, [cols.target], index, path, dtype=np.float64)[:, :, 0]
        y = np.where(ok, y, np.nan)
    else:
        assert close is not None
        y = forward_return(close, ok & np.isfinite(close), cfg.horizon)
    if not np.isfinite(y).any():
        what = f"column {cols.target!r} ([data] target)" if cols.target else "derived target"
        raise DataError(f"{path}: {what} has no finite value; expected numbers")
    if cfg.task == "classification":
        y = class_target(y, cfg.n_classes)
    else:
        y = transform_target(y, cfg.target_cs, cfg.target_winsor, cfg.target_scale)

    weight = None
    if cols.weight:
        weight = read_dense(lf, [cols.weight], index, path)[:, :, 0]
        bad = ok & ~(weight >= 0)
        if bad.any():
            raise DataError(
                f"{path}: column {cols.weight!r} ([data] weight) has {int(bad.sum())} negative or "
                "empty values on valid rows; expected weights >= 0"
            )

    if close is not None:
        ok &= np.isfinite(close)
    missing = np.isnan(values).mean(axis=2) if len(names) else np.zeros((D, S))
    valid = ok & (missing <= cfg.max_missing)
    if cfg.normalize in ("cs_zscore", "cs_rank"):
        cross_sectional(values, valid, cfg.normalize)
    return Panel(
        values=values,
        target=y.astype(np.float32),
        valid=valid,
        dates=index.dates,
        ids=index.ids,
        feature_names=names,
        weight=weight,
        source=str(path),
    )


def cross_sectional(values: np.ndarray, valid: np.ndarray, how: str) -> None:
    """Per-date z-score or rank of every feature over the valid securities, in place.

    Uses only the same date's values, so it holds no look-ahead and needs no split.
    """
    for d in range(values.shape[0]):
        rows = values[d]  # (S, F)
        x = np.where(valid[d][:, None], rows, np.nan)
        if how == "cs_rank":
            rows[:] = cs_rank(x)
        else:
            with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                m = np.nanmean(x, axis=0)
                s = np.nanstd(x, axis=0)
                rows[:] = (x - m) / np.where(s > 0, s, 1.0)


def describe(panel: Panel) -> dict[str, Any]:
    D, S, F = panel.shape
    return {
        "dates": D,
        "securities": S,
        "features": F,
        "first_date": panel.date_str(0),
        "last_date": panel.date_str(D - 1),
        "valid_share": round(float(panel.valid.mean()), 4),
        "labelled": int(panel.labelled.sum()),
    }
