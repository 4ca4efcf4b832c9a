"""The data settings of a study: which file, which columns, which target, which split."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from data.features import OHLCV_SETS
from data.fields import Checked

NORMALIZATIONS = ("robust", "cs_zscore", "cs_rank", "cs_rank+level", "none")
TARGET_CS = ("none", "demean", "zscore", "rank")
TASKS = ("regression", "classification")
FOLD_MODES = ("expanding", "sliding")


@dataclass(frozen=True)
class DataConfig(Checked):
    section: ClassVar[str] = "data"

    path: str = ""
    """Parquet or CSV file (`[data] path`, `--data`); relative paths resolve against the TOML."""
    date: str = "date"
    """Column of the time axis: a date, a datetime, an integer day number or a parseable string."""
    id: str | None = "symbol"
    """Column naming the security (`[data] id`); empty: the file is one single series."""
    order: str | None = None
    """Optional integer column ordering a single series (e.g. `ts_id`); replaces `date` as time axis."""
    target: str | None = None
    """Column holding the target; empty: forward return over `horizon` derived from `close`."""
    features: tuple[str, ...] = ()
    """Feature columns, names or glob patterns (`feature_*`); empty: every numeric column not
    otherwise used, except raw OHLCV levels (the mapped columns, and any column named open,
    high, low, close or volume)."""
    ohlcv_features: bool | None = None
    """Derive past-only features from OHLCV columns; None (default): when a close column exists."""
    ohlcv_set: str = "extended"
    """Which derived features: `extended` (default: basic + 10- and 60-date returns, 60-date
    volatility, volume against its 20-date mean, distance to the 20-date high and low, Amihud
    illiquidity) or `basic` (returns over 1, 5, 20 dates, range, open-close, volume change,
    20-date volatility; what studies stored before the key existed derived)."""
    open: str = "open"
    """The OHLCV columns (`[data] open` ... `volume`): one mapped to another name must be in
    the file (unless `ohlcv_features` is false); one left at its default may be absent."""
    high: str = "high"
    low: str = "low"
    close: str = "close"
    volume: str = "volume"
    tradable: str | None = None
    """Optional boolean column: False marks a day the security could not be traded."""
    weight: str | None = None
    """Optional sample weight column (weighted loss and metrics)."""
    horizon: int = 1
    """Days ahead of the forward-return target; also the purge before each later split segment."""
    task: str = "regression"
    """`regression` (MSE) or `classification` (cross-entropy on up/down or quantile classes)."""
    n_classes: int = 2
    """Classes for classification: 2 = up (target > 0) / down; more = per-date quantile buckets."""
    target_cs: str = "none"
    """Per-date transform of a regression target: none, demean, zscore or rank."""
    target_winsor: float = 0.0
    """Clip the regression target per date at this quantile and its mirror (0 = off), e.g. 0.01."""
    target_scale: float = 1.0
    """Multiply the regression target by this (raw daily returns are ~1e-2)."""
    normalize: str = "robust"
    """Feature scaling: robust (median/IQR from train dates), cs_zscore, cs_rank (per date),
    cs_rank+level (each feature twice: its per-date rank, and as NAME:level its quantile among
    the training dates' rows, both in [-0.5, 0.5]; twice the panel's memory), none (raw
    values, not clipped)."""
    clip: float = 5.0
    """Clip normalised features to [-clip, clip]."""
    max_missing: float = 0.5
    """A row whose share of missing (NaN) features exceeds this is invalid; below it, missing
    values are filled with 0 (the feature's centre) after normalisation."""
    val_frac: float = 0.15
    """Share of dates in validation (when `val_start` is not given)."""
    test_frac: float = 0.15
    """Share of dates in test (when `test_start` is not given); 0 = no test segment."""
    val_start: str | int | None = None
    """First validation date (overrides val_frac), e.g. "2017-01-03", or an integer time value."""
    test_start: str | int | None = None
    """First test date (overrides test_frac)."""
    embargo: int = 0
    """Extra dates dropped before each later segment, beyond the `horizon` purge."""
    stride: int = 1
    """Stride between training window end dates (validation and test always use stride 1)."""
    folds: int = 1
    """Walk-forward folds: K validation blocks of the validation segment's length, the last one
    the validation segment itself, each trained on the dates before it (purged); 1 = one split."""
    fold_mode: str = "expanding"
    """`expanding` (each fold trains on every date before its purge) or `sliding` (each fold
    trains on as many dates as the first fold has)."""

    def problems(self) -> list[str]:
        p: list[str] = []
        if not self.path:
            p.append("[data] path (--data): a Parquet or CSV file is required")
        if not self.date:
            p.append("[data] date: the time-axis column name is required")
        if not isinstance(self.horizon, int) or self.horizon < 1:
            p.append(f"[data] horizon: must be an integer >= 1, got {self.horizon!r}")
        if self.task not in TASKS:
            p.append(f"[data] task: must be one of {list(TASKS)}, got {self.task!r}")
        if not isinstance(self.n_classes, int) or self.n_classes < 2:
            p.append(f"[data] n_classes: must be an integer >= 2, got {self.n_classes!r}")
        if self.ohlcv_set not in OHLCV_SETS:
            p.append(f"[data] ohlcv_set: must be one of {list(OHLCV_SETS)}, got {self.ohlcv_set!r}")
        if self.target_cs not in TARGET_CS:
            p.append(f"[data] target_cs: must be one of {list(TARGET_CS)}, got {self.target_cs!r}")
        if not 0.0 <= self.target_winsor < 0.5:
            p.append(f"[data] target_winsor: must be in [0, 0.5), got {self.target_winsor!r}")
        if not self.target_scale > 0:
            p.append(f"[data] target_scale: must be > 0, got {self.target_scale!r}")
        if self.normalize not in NORMALIZATIONS:
            p.append(
                f"[data] normalize: must be one of {list(NORMALIZATIONS)}, got {self.normalize!r}"
            )
        if not self.clip > 0:
            p.append(f"[data] clip: must be > 0, got {self.clip!r}")
        if not 0.0 <= self.max_missing <= 1.0:
            p.append(f"[data] max_missing: must be in [0, 1], got {self.max_missing!r}")
        for key in ("val_frac", "test_frac"):
            v = getattr(self, key)
            if not 0.0 <= v < 1.0:
                p.append(f"[data] {key}: must be in [0, 1), got {v!r}")
        if self.val_start is None and not self.val_frac > 0:
            p.append("[data] val_frac: must be > 0 (a study needs a validation segment)")
        if self.val_start is None and self.val_frac + self.test_frac >= 0.9:
            p.append(
                f"[data] val_frac + test_frac: must leave training dates, got "
                f"{self.val_frac} + {self.test_frac}"
            )
        if not isinstance(self.embargo, int) or self.embargo < 0:
            p.append(f"[data] embargo: must be an integer >= 0, got {self.embargo!r}")
        if not isinstance(self.stride, int) or self.stride < 1:
            p.append(f"[data] stride: must be an integer >= 1, got {self.stride!r}")
        if not isinstance(self.folds, int) or self.folds < 1:
            p.append(f"[data] folds: must be an integer >= 1, got {self.folds!r}")
        if self.fold_mode not in FOLD_MODES:
            p.append(f"[data] fold_mode: must be one of {list(FOLD_MODES)}, got {self.fold_mode!r}")
        return p

    @property
    def file(self) -> Path:
        return Path(self.path)

    def settings(self) -> dict[str, Any]:
        """Every setting that changes the prepared data, except where the file lies (the
        basic OHLCV set left unnamed, as stored before there was a choice)."""
        d = asdict(self)
        d.pop("path")
        d["features"] = list(self.features)
        if self.ohlcv_set == "basic":
            del d["ohlcv_set"]
        return d

    @classmethod
    def stored(cls, d: Any, where: str | None = None) -> DataConfig:
        """Stored data settings (a study's, a checkpoint's) read back: settings stored before
        `ohlcv_set` existed derived the basic set."""
        if isinstance(d, dict) and "ohlcv_set" not in d:
            d = {**d, "ohlcv_set": "basic"}
        return cls.from_dict(d, where)
