"""Chronological train / validation / test segments with a purge before each later segment."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import numpy as np

from data.config import DataConfig
from data.errors import DataError


@dataclass(frozen=True)
class Split:
    """Date-index ranges in which a window may END (its label date), per segment.

    A label at end date d uses information up to d + horizon, so each segment stops
    `horizon + embargo` dates before the next one starts: no training label comes from a
    validation or test date, no validation label from a test date. Validation and test
    start where they are cut (v0, t0); only the segment before each cut is shortened.
    """

    train: range
    val: range
    test: range

    def as_dict(self) -> dict[str, list[int]]:
        segments = (("train", self.train), ("val", self.val), ("test", self.test))
        return {k: [r.start, r.stop] for k, r in segments}


def too_few_dates(D: int, horizon: int) -> str:
    """Why a file of `D` <= 1 dates is refused whatever its horizon: no setting makes room."""
    return (
        f"the file has {D} date{'s' if D != 1 else ''}: too few to split into training, "
        "validation and test dates with a purge before each later segment, whatever [data] "
        f"horizon is (here {horizon}; even 1 leaves none); expected a file of many dates"
    )


def make_split(dates: np.ndarray, cfg: DataConfig) -> Split:
    """Cut the (sorted) time axis `dates` by `val_start`/`test_start` or by fractions."""
    D = len(dates)
    gap = cfg.horizon + cfg.embargo
    where = f"{cfg.path}: " if cfg.path else ""
    if D <= 1:  # too few for the least purge there is (horizon 1, no embargo)
        raise DataError(f"{where}{too_few_dates(D, cfg.horizon)}")
    if gap >= D:
        raise DataError(
            f"{where}[data] horizon (--horizon) = {cfg.horizon}"
            + (f" + embargo = {gap}" if cfg.embargo else "")
            + f": the purge before validation and before test is not shorter than the file's "
            f"{D} dates; expected a horizon well below {D}"
        )
    if cfg.val_start is not None:
        v0 = _start(dates, cfg.val_start, "val_start", where)
    else:
        v0 = D - round(D * (cfg.val_frac + cfg.test_frac))
    if cfg.test_start is not None:
        t0 = _start(dates, cfg.test_start, "test_start", where)
    else:
        t0 = D - round(D * cfg.test_frac) if cfg.test_frac > 0 else D
    _refuse_outside(dates, cfg, v0, t0, where)
    if not 0 < v0 <= t0 <= D:
        raise DataError(
            f"{where}[data] val_start / test_start / val_frac / test_frac: `0 < validation "
            f"start <= test start <= n_dates` must hold, but got validation start {v0}, "
            f"test start {t0}, n_dates {D}"
        )
    train = range(0, max(v0 - gap, 0))
    val = range(v0, max(t0 - gap, v0)) if t0 < D else range(v0, D)
    test = range(t0, D)
    if len(train) == 0:
        raise DataError(
            f"{where}[data] val_frac / val_start: no training dates left before validation "
            f"(index {v0} of {D} dates) after the purge of horizon + embargo = {gap} dates"
        )
    if len(val) == 0:
        raise DataError(
            f"{where}[data] val_frac / val_start: the validation segment (dates {v0}..{t0 - 1} "
            f"of {D}) is empty after the purge of horizon + embargo = {gap} dates before the "
            "test start; use more dates or a longer validation segment"
        )
    return Split(train, val, test)


def _show(day: object) -> str:
    """A value of the time axis as a user writes it: 2020-01-31 for a midnight datetime, an
    integer (an `order` column) as it is."""
    text = str(day)
    if not isinstance(day, np.datetime64):
        return text
    return text[:10] if text[10:].strip("T0:.") == "" else text


def _refuse_outside(dates: np.ndarray, cfg: DataConfig, v0: int, t0: int, where: str) -> None:
    """A DataError naming a given val_start / test_start that lands outside the file's dates,
    or a val_start after the test start, by the values given and the file's dates."""
    D = len(dates)
    span = f"the file's dates are {_show(dates[0])} .. {_show(dates[-1])}"
    for key, given, at in (("val_start", cfg.val_start, v0), ("test_start", cfg.test_start, t0)):
        if given is None:
            continue
        if at >= D and key == "val_start":  # a test_start past the end: no test segment
            raise DataError(f"{where}[data] {key} = {given!r} is after the last date: {span}")
        if at == 0:
            raise DataError(
                f"{where}[data] {key} = {given!r} leaves no training date before it: {span}"
            )
    if v0 > t0 and v0 < D and (cfg.val_start is not None or cfg.test_start is not None):
        val = f"val_start = {cfg.val_start!r}" if cfg.val_start is not None else "val_frac"
        test = f"test_start = {cfg.test_start!r}" if cfg.test_start is not None else "test_frac"
        raise DataError(
            f"{where}[data] {val} starts validation on {_show(dates[v0])}, after the test "
            f"start ({test}: {_show(dates[t0])}); expected validation before test"
        )


def _start(dates: np.ndarray, when: str | int, key: str, where: str) -> int:
    """Index of the first date >= `when` on the time axis."""
    digits = str(when).strip()
    eight = re.fullmatch(r"\d{8}", digits) is not None
    if not np.issubdtype(dates.dtype, np.integer) and (isinstance(when, int) or eight):
        try:  # 20240105 (or "20240105") is that date, as a date column of eight digits reads
            if not eight:
                raise ValueError(digits)
            when = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:])).isoformat()
        except ValueError:
            raise DataError(
                f"{where}[data] {key} = {when!r}: "
                + ("not a date as YYYYMMDD" if eight else "a number on a date axis")
                + f" (it would read as the year {digits}); expected a date like "
                f"{_show(dates[0])!r}"
            ) from None
    try:
        if np.issubdtype(dates.dtype, np.integer):
            target = np.array(int(when), dtype=dates.dtype)
        else:
            target = np.array(np.datetime64(str(when))).astype(dates.dtype)
    except (ValueError, TypeError):
        raise DataError(
            f"{where}[data] {key}: cannot read {when!r} as a value of the time axis "
            f"({dates.dtype}); expected e.g. {_show(dates[0])!r}"
        ) from None
    return int(np.searchsorted(dates, target, side="left"))


def make_folds(split: Split, cfg: DataConfig, n_dates: int) -> list[Split]:
    """Walk-forward folds ending with `split` itself (the last fold).

    Fold k validates on the block of len(split.val) dates that ends where fold k+1's block
    starts, and trains on the dates before that block less the `horizon + embargo` purge:
    all of them (`expanding`) or as many as the first fold has (`sliding`). Test is shared.
    """
    K = cfg.folds
    if K == 1:
        return [split]
    gap = cfg.horizon + cfg.embargo
    L = len(split.val)
    where = f"{cfg.path}: " if cfg.path else ""
    first_val = split.val.start - (K - 1) * L
    if first_val - gap < 2:
        raise DataError(
            f"{where}[data] folds = {K}: {K} validation blocks of {L} dates each (the validation "
            f"segment's length) leave no training dates before the first one "
            f"({split.val.start} dates precede validation, {n_dates} in all); use fewer folds "
            "or a shorter validation segment"
        )
    first_train = first_val - gap
    folds = []
    for k in range(K - 1):
        v0 = first_val + k * L
        lo = 0 if cfg.fold_mode == "expanding" else max(v0 - gap - first_train, 0)
        folds.append(Split(range(lo, v0 - gap), range(v0, v0 + L), split.test))
    if cfg.fold_mode == "sliding":
        lo = max(split.val.start - gap - first_train, 0)
        folds.append(Split(range(lo, split.train.stop), split.val, split.test))
    else:
        folds.append(split)
    return folds
