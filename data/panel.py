"""The dense panel: a long file pivoted once into values[D, S, F], target[D, S], valid[D, S]."""

from __future__ import annotations

import functools
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from data.checks import (
    check_horizon,
    check_weight,
    drop_constant,
    refuse_no_value,
    training_dates,
    warn_leaky_features,
    warn_target_size,
)
from data.columns import Columns, resolve_columns
from data.config import DataConfig
from data.errors import DataError, DataWarning, plural
from data.features import (
    class_target,
    cs_rank,
    forward_return,
    ohlcv_feature_names,
    ohlcv_features,
    transform_target,
)
from data.load import (
    Index,
    collect,
    not_numbers,
    parse_time,
    read_dense,
    read_index,
    refuse_infinite,
    scan,
    scan_rows,
    settle_types,
    since,
)
from data.normalize import add_levels, source_features
from data.split import too_few_dates


@dataclass
class Panel:
    """Dense data. Rows absent from the file are NaN and invalid.

    `values` are raw, except with a per-date (cross-sectional) normalisation, which is applied
    in place at load time: it uses only each date's own rows, so it needs no split.
    """

    values: np.ndarray  # (D, S, F) float32, features (NaN where missing)
    target: np.ndarray  # (D, S) float32, NaN where there is no label (class codes if classes)
    valid: np.ndarray  # (D, S) bool, usable as a window step: present, tradable, features
    # mostly present (share missing <= max_missing), close price known when one is mapped
    dates: np.ndarray  # (D,)
    ids: np.ndarray  # (S,) str
    feature_names: list[str]
    weight: np.ndarray | None = None  # (D, S) float32
    source: str = ""
    has_target: bool = True  # False: read to predict, the given target column absent (all NaN)
    target_raw: np.ndarray | None = None  # (D, S) float32 before transforms (None: untransformed)

    @property
    def shape(self) -> tuple[int, int, int]:
        D, S, F = self.values.shape
        return D, S, F

    @property
    def labelled(self) -> np.ndarray:
        """(D, S) bool: a window may end here (valid row with a finite target)."""
        return self.valid & np.isfinite(self.target)

    def date_str(self, d: int) -> str:
        """Date `d` as text: 2024-01-31 where every date of the panel is at midnight (dates,
        or a pandas file's datetimes of days), else to the second."""
        text = str(self.dates[d])[:19]
        return text[:10] if self.days_only else text

    @functools.cached_property
    def days_only(self) -> bool:
        """Every date at midnight (or no time of day at all)."""
        dates = np.asarray(self.dates)
        if not np.issubdtype(dates.dtype, np.datetime64):
            return False
        return bool((dates.astype("datetime64[D]") == dates).all())


def size(n: int | Path) -> str:
    """A number of bytes (or a file's) for a person: 850 KB, 310 MB, 2.2 GB."""
    b = n.stat().st_size if isinstance(n, Path) else n
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= scale:
            return f"{b / scale:.{1 if b < 10 * scale else 0}f} {unit}"
    return f"{b} bytes"


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
    return hashlib.blake2b((file_digest(cfg.file) + settings).encode(), digest_size=12).hexdigest()


def time_axis(cfg: DataConfig) -> pl.Series:
    """The file's dates (or order values), parsed, unique and sorted: its time column only."""
    path = cfg.file
    lf = scan(path)
    col, key = (cfg.order, "order") if cfg.order else (cfg.date, "date")
    schema = lf.collect_schema()
    if col not in schema:
        resolve_columns(cfg, schema, for_prediction=True)  # names every missing column at once
        raise DataError(f"{path}: column {col!r} ([data] {key}) not found")
    t = collect(lf.select(col), path, [col]).get_column(col)
    return parse_time(t, key, path).unique().sort()


def load_panel(
    cfg: DataConfig,
    for_prediction: bool = False,
    first: Any = None,
    say: Callable[[str], None] | None = None,
    features: Sequence[str] | None = None,
) -> Panel:
    """Read, check and pivot the file described by `cfg` into a Panel.

    Peak memory is the dense arrays plus a few (D, S) planes and one chunk of columns of the
    long file: the long frame is never held whole beside the panel.

    A feature column with no value (every row empty or NaN) is refused. `for_prediction`:
    the data of a trained model's predictions, where a given target column may be absent or
    empty (the panel then has no labels: `has_target` is False) and a feature column with no
    value is only warned about (the model sees it as missing on every row), and `first`, a
    value of the `time_axis`, keeps only the dates from it on (the rest is not read). The
    target before any transform is kept as `target_raw` for predictions, and whenever a
    transform (classes, per-date ranks, winsorising, scaling) changes it.

    `say` takes one line as each step starts (reading the file, the dense panel, the
    features, the target and checks) and one when the panel is done, with its time.

    `features` (for predictions): a trained model's features, in its order; the panel holds
    exactly those before each row's missing share and the per-date normalisation are taken,
    as in training, where features constant over the training dates were left out first.
    """
    t0 = time.perf_counter()
    step = say or (lambda line: None)
    path = cfg.file
    ids = [cfg.id] if cfg.id else []  # read as text: ids round-trip exactly (000001)
    lf, n_rows = scan_rows(path, ids)
    lf, empty = settle_types(lf, path, ids)
    cols = resolve_columns(
        cfg, lf.collect_schema(), empty, for_prediction, lambda c: not_numbers(lf, c)
    )
    if first is not None:
        lf = since(lf, cols, path, first)
    n_columns = len(lf.collect_schema())
    step(f"reading {n_rows:,} rows x {n_columns} columns from {path} ({size(path)})...")
    rd = _Reader(lf, read_index(lf, cols, path), path)
    _check_one_series(cfg, path, len(rd.index.ids), for_prediction)
    if not for_prediction:
        _check_classes(cfg, path, len(rd.index.ids))
    D, S = rd.shape
    if cols.has_target and not cols.target and not for_prediction:
        _check_horizon_fits(cfg, path, D)
    step(
        f"building the dense panel: {D:,} dates x {S:,} {'security' if S == 1 else 'securities'}..."
    )
    ok, ohlcv = _rows(rd, cols)
    F = len(ohlcv_feature_names(ohlcv, cfg.ohlcv_set) if cols.derive else []) + len(cols.features)
    step(f"features: {F} into a {D:,} x {S:,} x {F} float32 array ({size(D * S * F * 4)})...")
    values, names = _features(rd, cfg, cols, ohlcv, for_prediction)
    step("target and checks...")
    close = ohlcv.pop("close", None)
    del ohlcv
    weight = rd.plane(cols.weight, np.float32) if cols.weight else None
    y, raw = _target(rd, cfg, cols, ok, close, for_prediction)  # refuses infinite values first
    del close
    check_weight(rd.path, cols, weight, ok)
    levels = cfg.normalize == "cs_rank+level"
    if not for_prediction:
        train = training_dates(rd.index.dates, cfg)  # one split for both checks
        warn_target_size(rd.path, cfg, train, y)
        values, names = drop_constant(rd.path, train, values, names)
        warn_leaky_features(rd.path, train, values, names, y)
    elif features is not None:
        want = source_features(cfg.normalize, list(features))
        values, names = _in_order(rd.path, values, names, want)
    if levels:
        values, names = add_levels(rd.path, values, names)
    valid = valid_rows(values, ok, cfg)
    step(f"panel done in {time.perf_counter() - t0:.1f}s")
    return Panel(
        values=values,
        target=y.astype(np.float32),
        valid=valid,
        dates=rd.index.dates,
        ids=rd.index.ids,
        feature_names=names,
        weight=weight,
        source=str(path),
        has_target=cols.has_target,
        target_raw=raw,
    )


@dataclass
class _Reader:
    """One file's columns read into dense (D, S[, F]) arrays on its (date, id) index."""

    lf: pl.LazyFrame
    index: Index
    path: Path
    infinite: dict[str, int] = field(default_factory=dict)  # column -> rows, refused at once

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.index.dates), len(self.index.ids)

    def dense(self, columns: list[str], out: np.ndarray, empty: list[str]) -> None:
        read_dense(
            self.lf, columns, self.index, self.path, out, empty=empty, infinite=self.infinite
        )

    def plane(self, col: str, dtype: type = np.float64) -> np.ndarray:
        x = read_dense(self.lf, [col], self.index, self.path, dtype=dtype, infinite=self.infinite)
        return x[:, :, 0]  # (D, S)


def _check_one_series(cfg: DataConfig, path: Path, n_ids: int, for_prediction: bool) -> None:
    """Refuse a per-date (cross-sectional) setting on a file of one series (for a model's
    predictions: say that the model needs a panel, as no setting of its can change)."""
    if n_ids > 1:
        return
    per_date = {  # key -> (set per date?, the per-series values, the line that sets one)
        "target_cs": (cfg.target_cs != "none" and cfg.task == "regression", "'none'", '"none"'),
        "n_classes": (cfg.task == "classification" and cfg.n_classes > 2, "2", "2"),
        "normalize": (
            cfg.normalize in ("cs_zscore", "cs_rank", "cs_rank+level"),
            "'robust' or 'none'",
            '"robust"',
        ),
    }
    hit = {key: v for key, v in per_date.items() if v[0]}  # the per-date ones set
    settings = [f"[data] {key} = {getattr(cfg, key)!r}" for key in hit]
    wrong = [f"{setting} (use {v[1]})" for setting, v in zip(settings, hit.values(), strict=True)]
    lines = [f"{key} = {v[2]}" for key, v in hit.items()]
    # the command line's way to the same per-series values (n_classes has no flag)
    named = {"target_cs": "--target-cs none", "normalize": "--normalize robust"}
    flags = [named.get(key) for key in hit]
    if wrong:
        one = (
            f"holds one security (its id column {cfg.id!r}, [data] id, has one value)"
            if cfg.id
            else "is one series (no [data] id)"
        )
        if for_prediction:
            raise DataError(
                f"{path}: the file {one}, but the model was trained on a panel and reads "
                f"each date across securities ({'; '.join(settings)})"
                ": give it a file of the securities of each date, or train a model of one "
                "series for this file"
            )
        raise DataError(
            f"{path}: the file {one}, but "
            f"{'these settings work' if len(wrong) > 1 else 'this setting works'} across "
            f"securities per date: {'; '.join(wrong)}; a study of it needs "
            + (f"{' '.join(map(str, flags))} on optuna-run, or " if all(flags) else "")
            + f"{' and '.join(lines)} under [data] in a study TOML given with --config"
        )


def _check_classes(cfg: DataConfig, path: Path, n_ids: int) -> None:
    """Refuse more per-date quantile classes than the file has securities: some classes
    could never be filled (and the network's head, one output a class, only grows)."""
    if cfg.task != "classification" or cfg.n_classes <= max(n_ids, 2):
        return
    raise DataError(
        f"{path}: [data] n_classes = {cfg.n_classes} per-date quantile classes, but the file "
        f"has {n_ids} securities; expected n_classes <= {n_ids}"
    )


def _check_horizon_fits(cfg: DataConfig, path: Path, n_dates: int) -> None:
    """Refuse a forward-return horizon that leaves no date a close `horizon` dates later."""
    if cfg.horizon < n_dates:
        return
    if n_dates <= 1:  # no horizon fits: the file is too short, whatever --horizon says
        raise DataError(f"{path}: {too_few_dates(n_dates, cfg.horizon)}")
    than = "exceeds" if cfg.horizon > n_dates else "equals"
    raise DataError(
        f"{path}: [data] horizon (--horizon) = {cfg.horizon} {than} the file's {n_dates} "
        f"dates, so no date has a close {cfg.horizon} dates later to derive the forward-return "
        f"target from; expected a horizon below {n_dates}"
    )


def _no_label(
    rd: _Reader, cfg: DataConfig, cols: Columns, close: np.ndarray | None, given: bool = False
) -> str:
    """Why the target has no finite value on a tradable row: the tradable column, the close
    the target is derived from (or that makes a row tradable) or, failing those, the target;
    `given`: the target column has a finite value on some row, none of them tradable."""
    path, c = rd.path, cols.ohlcv.get("close")
    tradable = "any row"
    if cols.tradable:
        flag = rd.plane(cols.tradable, np.float32)[rd.index.di, rd.index.si]  # (N,)
        if not (flag == 1).any():
            return (
                f"{path}: column {cols.tradable!r} ([data] tradable) marks no row tradable; "
                "expected true (or 1) on the rows a security could be traded"
            )
        tradable = f"a row column {cols.tradable!r} ([data] tradable) marks tradable"
    if close is not None and not np.isfinite(close).any():
        return (
            f"{path}: column {c!r} ([data] close) has no value on {tradable} (a row without a "
            "close is not tradable); expected prices"
        )
    if cols.target:
        if given and close is not None:  # its values all on rows without a close
            tradable = (
                f"{tradable} and that has a close" if cols.tradable else "a row with a close"
            ) + f" (column {c!r}, [data] close: a row without one is not tradable)"
        return (
            f"{path}: column {cols.target!r} ([data] target) has no finite value on "
            f"{tradable}; expected numbers"
        )
    assert close is not None
    if not (close > 0).any():
        return (
            f"{path}: column {c!r} ([data] close) has no positive value on {tradable}, so no "
            "forward-return target can be derived; expected positive prices"
        )
    h = cfg.horizon
    return (
        f"{path}: the forward-return target (from column {c!r} over [data] horizon "
        f"(--horizon) = {h} date{'s' if h > 1 else ''}) has no finite value: no security has a "
        f"positive close on two tradable dates {h} apart; expected such pairs of dates"
    )


def _rows(rd: _Reader, cols: Columns) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(D, S) present and tradable (with a close price when one is mapped), and the (D, S)
    OHLCV planes, NaN where not tradable."""
    present = np.zeros(rd.shape, dtype=bool)
    present[rd.index.di, rd.index.si] = True
    tradable = rd.plane(cols.tradable, np.float32) if cols.tradable else None
    ohlcv = {role: rd.plane(col) for role, col in cols.ohlcv.items()}  # (D, S) each
    return tradable_rows(present, tradable, ohlcv), ohlcv


def tradable_rows(
    present: np.ndarray, tradable: np.ndarray | None, ohlcv: dict[str, np.ndarray]
) -> np.ndarray:
    """(D, S) bool: a row that is `present`, tradable (`tradable` the float32 plane of the
    tradable column: 1 is tradable; 0, empty or absent is not) and, when a close is mapped,
    has a finite close. The float64 OHLCV planes are set to NaN elsewhere, in place."""
    ok = present.copy()
    if tradable is not None:
        ok &= tradable == 1
    for x in ohlcv.values():
        x[~ok] = np.nan
    close = ohlcv.get("close")
    if close is not None:
        ok &= np.isfinite(close)
    return ok


def _features(
    rd: _Reader,
    cfg: DataConfig,
    cols: Columns,
    ohlcv: dict[str, np.ndarray],
    for_prediction: bool,
) -> tuple[np.ndarray, list[str]]:
    """(D, S, F) float32 features, derived ones first, and their names; the OHLCV planes
    other than close are dropped once used."""
    derived = ohlcv_feature_names(ohlcv, cfg.ohlcv_set) if cols.derive else []
    names = derived + list(cols.features)
    values = np.full((*rd.shape, len(names)), np.nan, dtype=np.float32)  # (D, S, F)
    if cols.derive:
        for j, (name, x) in enumerate(ohlcv_features(ohlcv, cfg.ohlcv_set)):
            assert name == names[j]
            values[:, :, j] = x
    for role in [r for r in ohlcv if r != "close"]:
        del ohlcv[role]
    if cols.features:
        no_value: list[str] = []
        rd.dense(list(cols.features), values[:, :, len(derived) :], no_value)
        if no_value:
            named = set(no_value) <= set(cfg.features)  # not from a glob or the default
            refuse_no_value(rd.path, no_value, named=named, warn=for_prediction)
    return values, names


def _target(
    rd: _Reader,
    cfg: DataConfig,
    cols: Columns,
    ok: np.ndarray,
    close: np.ndarray | None,
    for_prediction: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(D, S) float64 target as the model learns it: the given column or the forward return,
    NaN where not tradable, then classes or the per-date transform; and for predictions,
    (D, S) float32 the target before those, for predictions and whenever they change it (the
    return a portfolio earns; None otherwise)."""
    given = False  # a given target with a finite value on some row, tradable or not
    if cols.target:
        y = rd.plane(cols.target)  # (D, S)
        given = bool(np.isfinite(y).any())
        y[~ok] = np.nan
        if not for_prediction:
            check_horizon(rd.path, cfg, cols.target, y)
    elif not cols.has_target:
        y = np.full(rd.shape, np.nan)
    else:
        assert close is not None
        y = forward_return(close, ok, cfg.horizon)  # (D, S)
    if for_prediction and cols.target and rd.infinite.get(cols.target):
        # a prediction does not need the target: its infinite values are left empty, said
        n = rd.infinite.pop(cols.target)
        y[np.isinf(y)] = np.nan
        warnings.warn(
            f"{rd.path}: column {cols.target!r} ([data] target) has infinite values in "
            f"{plural(n, 'row')}: their target and target_raw are left empty (a prediction "
            "needs no target)",
            DataWarning,
            stacklevel=3,
        )
    refuse_infinite(rd.path, rd.infinite)  # every column read by now: all named at once
    if not for_prediction and not np.isfinite(y).any():
        raise DataError(_no_label(rd, cfg, cols, close, given))
    transformed = cfg.task == "classification" or (
        cfg.target_cs != "none" or cfg.target_winsor > 0 or cfg.target_scale != 1.0
    )
    raw = y.astype(np.float32) if for_prediction or transformed else None
    if cfg.task == "classification":
        if cfg.n_classes == 2 and cfg.target_cs != "none" and not for_prediction:
            warnings.warn(
                f"{rd.path}: [data] target_cs = {cfg.target_cs!r} is not applied to the 2 "
                "up/down classes (--task classification): up is a target above 0, the "
                "market's move included, so the classes bet on the market's direction as "
                "much as on each security's; set n_classes = 3 or more for per-date quantile "
                'classes, or target_cs = "none" (--target-cs none) to keep these',
                DataWarning,
                stacklevel=3,
            )
        return class_target(y, cfg.n_classes), raw
    return transform_target(y, cfg.target_cs, cfg.target_winsor, cfg.target_scale), raw


def _in_order(
    path: Path, values: np.ndarray, names: list[str], want: list[str]
) -> tuple[np.ndarray, list[str]]:
    """The (D, S, F) features `want`, in that order, from `values` named `names`."""
    if names == want:
        return values, names
    lacking = [n for n in want if n not in names]
    if lacking:
        raise DataError(
            f"{path}: the model's feature(s) {lacking} are derived from OHLCV columns "
            "this file lacks ([data] open / high / low / close / volume)"
        )
    idx = [names.index(n) for n in want]
    return np.ascontiguousarray(values[:, :, idx]), want


def valid_rows(values: np.ndarray, ok: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """(D, S) bool: the `ok` rows of (D, S, F) `values` with at most `cfg.max_missing` of
    their features missing; with a per-date normalisation, `values` are normalised in place
    over each date's valid rows."""
    valid = ok & (missing_share(values) <= cfg.max_missing)
    if cfg.normalize in ("cs_zscore", "cs_rank"):
        cross_sectional(values, valid, cfg.normalize)
    elif cfg.normalize == "cs_rank+level":  # the first half; the levels stay raw until a batch
        cross_sectional(values[:, :, : values.shape[2] // 2], valid, "cs_rank")
    return valid


def missing_share(values: np.ndarray, block: int = 16) -> np.ndarray:
    """(D, S) share of NaN features per row, `block` dates at a time (no (D, S, F) temporary)."""
    D, S, F = values.shape
    out = np.zeros((D, S), dtype=np.float32)
    if F == 0:
        return out
    for d0 in range(0, D, block):
        out[d0 : d0 + block] = np.isnan(values[d0 : d0 + block]).sum(axis=2) / F
    return out


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
