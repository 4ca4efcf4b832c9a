"""Chronological train / validation / test segments with a purge before each later segment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.config import DataConfig
from data.errors import DataError


@dataclass(frozen=True)
class Split:
    """Date-index ranges in which a window may END (its label date), per segment.

    A label at end date d uses information up to d + horizon, so each segment stops
    `horizon + embargo` dates before the next one starts: no training label comes from a
    validation or test date, no validation label from a test date.
    """

    train: range
    val: range
    test: range

    def as_dict(self) -> dict[str, list[int]]:
        return {k: [r.start, r.stop] for k, r in (("train", self.train), ("val", self.val),
                                                   ("test", self.test))}


def make_split(dates: np.ndarray, cfg: DataConfig) -> Split:
    D = len(dates)
    gap = cfg.horizon + cfg.embargo
    v0 = _start(dates, cfg.val_start, "val_start") if cfg.val_start else D - round(
        D * (cfg.val_frac + cfg.test_frac)
    )
    if cfg.test_start:
        t0 = _start(dates, cfg.test_start, "test_start")
    elif cfg.test_frac > 0:
        t0 = D - round(D * cfg.test_frac)
    else:
        t0 = D
    if not 0 < v0 <= t0 <= D:
        raise DataError(
            f"[data] val_start/test_start: validation must start after the first date and not "
            f"after the test start, got validation index {v0}, test index {t0} of {D} dates"
        )
    train = range(0, max(v0 - gap, 0))
    val = range(v0, max(t0 - gap, v0)) if t0 < D else range(v0, D)
    test = range(t0, D)
    if len(train) == 0:
        raise DataError(
            f"[data] split: no training dates left after the purge of {gap} dates "
            f"({D} dates, validation starts at index {v0})"
        )
    if len(val) == 0:
        raise DataError(
            f"[data] split: the validation segment is empty after the purge of {gap} dates "
            f"({D} dates, validation index {v0}..{t0}); use more dates or a larger val_frac"
        )
    return Split(train, val, test)


def _start(dates: np.ndarray, when: str, key: str) -> int:
    try:
        if np.issubdtype(dates.dtype, np.integer):
            target = np.array(int(when), dtype=dates.dtype)
        else:
            target = np.array(np.datetime64(when)).astype(dates.dtype)
    except (ValueError, TypeError):
        raise DataError(f"[data] {key}: cannot read {when!r} as a date of the time axis") from None
    return int(np.searchsorted(dates, target, side="left"))
