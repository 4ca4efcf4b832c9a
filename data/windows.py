"""Window END-point index and batch gathering: windows are never materialised.

A window ending at (d, s) covers dates d-T+1..d of security s; it exists when all T dates are
valid for s and the target at d is finite. The index holds only flat end points d * S + s,
and a batch X[T, B, F] is gathered from the device-resident panel when it is needed.
"""

from __future__ import annotations

import numpy as np
import torch


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
    """Run lengths computed once per panel; end points cached per (time_steps, segment)."""

    def __init__(self, valid: np.ndarray, labelled: np.ndarray) -> None:
        self.runs = run_lengths(valid)
        self.labelled = labelled
        self._cache: dict[tuple[int, int, int, int], np.ndarray] = {}

    def ends(self, time_steps: int, dates: range, stride: int = 1) -> np.ndarray:
        key = (time_steps, dates.start, dates.stop, stride)
        if key not in self._cache:
            self._cache[key] = window_ends(self.runs, self.labelled, time_steps, dates, stride)
        return self._cache[key]


def gather(values: torch.Tensor, ends: torch.Tensor, time_steps: int) -> torch.Tensor:
    """X[T, B, F] with X[t, b] = values[d_b - T + 1 + t, s_b] for flat end points d * S + s."""
    S = values.shape[1]
    d = ends // S  # (B,)
    s = ends % S  # (B,)
    offsets = torch.arange(time_steps - 1, -1, -1, device=ends.device)  # (T,)
    rows = d.unsqueeze(0) - offsets.unsqueeze(1)  # (T, B)
    return values[rows, s.unsqueeze(0)]  # (T, B, F)
