"""Window END-point index and batch gathering: windows are never materialised.

A window ending at (d, s) covers dates d-T+1..d of security s; it exists when all T dates are
valid for s and the target at d is finite. The index holds only flat end points d * S + s,
and a batch X[T, B, F] is gathered from the device-resident panel when it is needed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import numpy as np
import torch

V = TypeVar("V")


class Recent(Generic[V]):
    """At most `size` values by key, the least recently used dropped first: a study's trials
    draw many time_steps, and each keeps index arrays of the training windows (millions of
    end points on a large panel, on the device too) that no later trial may ask for again;
    the validation windows, the same for every trial, stay."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._d: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        value = self._d[key] = make()
        while len(self._d) > self.size:
            self._d.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._d)


def run_lengths(valid: np.ndarray) -> np.ndarray:
    """(D, S) int32: number of consecutive valid dates ending at each date (0 where invalid)."""
    D = valid.shape[0]
    idx = np.arange(D, dtype=np.int32)[:, None]
    last_invalid = np.maximum.accumulate(np.where(valid, -1, idx), axis=0)
    return (idx - last_invalid).astype(np.int32)


def window_ends(
    runs: np.ndarray, labelled: np.ndarray, time_steps: int, dates: range, stride: int = 1
) -> np.ndarray:
    """Flat end points d * S + s (int64, sorted by date then security) of every window of
    `time_steps` valid dates whose end date lies in `dates` and carries a label."""
    D, S = runs.shape
    lo, hi = max(dates.start, time_steps - 1), min(dates.stop, D)
    if hi <= lo:
        return np.zeros(0, dtype=np.int64)
    ok = (runs[lo:hi] >= time_steps) & labelled[lo:hi]
    if stride > 1:
        keep = (np.arange(lo, hi) - dates.start) % stride == 0
        ok &= keep[:, None]
    d, s = np.nonzero(ok)
    return (d.astype(np.int64) + lo) * S + s


class WindowIndex:
    """Run lengths computed once per panel; end points kept for the most recent
    (time_steps, segment) asked for."""

    def __init__(self, valid: np.ndarray, labelled: np.ndarray, keep: int = 16) -> None:
        self.runs = run_lengths(valid)
        self.labelled = labelled
        self._cache: Recent[np.ndarray] = Recent(keep)

    def ends(self, time_steps: int, dates: range, stride: int = 1) -> np.ndarray:
        key = (time_steps, dates.start, dates.stop, stride)
        return self._cache.get(
            key, lambda: window_ends(self.runs, self.labelled, time_steps, dates, stride)
        )


def gather(values: torch.Tensor, ends: torch.Tensor, time_steps: int) -> torch.Tensor:
    """X[T, B, F] with X[t, b] = values[d_b - T + 1 + t, s_b] for flat end points d * S + s."""
    S = values.shape[1]
    d = ends // S  # (B,)
    s = ends % S  # (B,)
    offsets = torch.arange(time_steps - 1, -1, -1, device=ends.device)  # (T,)
    rows = d.unsqueeze(0) - offsets.unsqueeze(1)  # (T, B)
    return values[rows, s.unsqueeze(0)]  # (T, B, F)
