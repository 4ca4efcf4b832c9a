"""Feature scaling fitted on training dates only, applied to each gathered batch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from data.errors import DataError

LEVEL = ":level"
"""Suffix of a feature's second view under `normalize = "cs_rank+level"`."""

QUANTILES = 1001
"""Points of a level feature's training distribution kept (every 0.1 percentile)."""


@dataclass(frozen=True)
class Scaler:
    """x -> clip((x - center) / scale, -clip, clip), then NaN -> 0 (the feature's centre).

    With `knots` and `positions` (L, QUANTILES), the last L features are first mapped each
    through its training distribution: a value at knot k becomes positions[k] in [-0.5, 0.5]
    (linear between knots, saturating outside them), its quantile among the training rows."""

    center: np.ndarray  # (F,) float32
    scale: np.ndarray  # (F,) float32
    clip: float
    knots: np.ndarray | None = None  # (L, Q) float32, each row non-decreasing
    positions: np.ndarray | None = None  # (L, Q) float32, tied knots share their mean

    def to(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.as_tensor(self.center, device=device),
            torch.as_tensor(self.scale, device=device),
        )

    def levels_to(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.knots is None or self.positions is None:
            return None
        return (
            torch.as_tensor(self.knots, device=device),
            torch.as_tensor(self.positions, device=device),
        )

    def record(self) -> dict[str, torch.Tensor | float]:
        """As a checkpoint keeps it (tensors and a float: `torch.load(weights_only=True)`)."""
        rec: dict[str, torch.Tensor | float] = {
            "center": torch.as_tensor(self.center),
            "scale": torch.as_tensor(self.scale),
            "clip": float(self.clip),
        }
        if self.knots is not None and self.positions is not None:
            rec["knots"] = torch.as_tensor(self.knots)
            rec["positions"] = torch.as_tensor(self.positions)
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Scaler:
        knots, positions = rec.get("knots"), rec.get("positions")
        return cls(
            rec["center"].numpy(),
            rec["scale"].numpy(),
            float(rec["clip"]),
            None if knots is None else knots.numpy(),
            None if positions is None else positions.numpy(),
        )


def fit_levels(
    values: np.ndarray, valid: np.ndarray, dates: range, first: int
) -> tuple[np.ndarray, np.ndarray]:
    """(knots, positions), each (F - first, QUANTILES): every 0.1 percentile of features
    `first`.. over the valid rows of `dates` (training dates; nothing else is read), and
    where each knot sits in [-0.5, 0.5] (tied knots at the mean of their places, so a value
    shared by many rows maps to the middle of its share)."""
    F = values.shape[2]
    rows = valid[dates.start : dates.stop]
    grid = np.linspace(-0.5, 0.5, QUANTILES)
    knots = np.zeros((F - first, QUANTILES), dtype=np.float32)
    positions = np.zeros((F - first, QUANTILES), dtype=np.float32)
    for j in range(first, F):
        x = values[dates.start : dates.stop, :, j][rows]
        x = x[np.isfinite(x)]
        if x.size == 0:  # no training value: every value maps to the middle
            continue
        q = np.quantile(x.astype(np.float64), np.linspace(0.0, 1.0, QUANTILES))
        _, inv = np.unique(q, return_inverse=True)
        knots[j - first] = q
        positions[j - first] = (np.bincount(inv, grid) / np.bincount(inv))[inv]
    return knots, positions


def to_levels(x: torch.Tensor, knots: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(..., L) values -> their places in [-0.5, 0.5] along (L, Q) `knots` and `positions`
    (a new tensor; NaN stays NaN)."""
    L, Q = knots.shape
    flat = x.reshape(-1, L).T.contiguous()  # (L, N)
    i = torch.searchsorted(knots, flat).clamp_(1, Q - 1)
    lo, hi = knots.gather(1, i - 1), knots.gather(1, i)
    p_lo, p_hi = positions.gather(1, i - 1), positions.gather(1, i)
    gap = hi - lo
    t = torch.where(gap > 0, (flat - lo) / torch.where(gap > 0, gap, 1), 0).clamp_(0, 1)
    out = torch.where(torch.isnan(flat), flat, p_lo + t * (p_hi - p_lo))
    return out.T.reshape(x.shape)


def add_levels(path: Any, values: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Each feature twice, (D, S, F) -> (D, S, 2F): the second copy named NAME:level (mapped
    to its quantile among the training rows at each batch; the first is ranked per date)."""
    twice = [n for n in names if n + LEVEL in names]
    if twice:
        raise DataError(
            f"{path}: feature column {twice[0] + LEVEL!r} clashes with the level view of "
            f'{twice[0]!r} ([data] normalize = "cs_rank+level"); rename it or leave it out '
            "of [data] features"
        )
    return np.concatenate([values, values], axis=2), names + [n + LEVEL for n in names]


def source_features(normalize: str, names: list[str]) -> list[str]:
    """The features a model of `names` reads from its data: under cs_rank+level the first
    half (NAME, ..., NAME:level, ...: the levels are copies), else all of them."""
    if normalize != "cs_rank+level":
        return list(names)
    base = names[: len(names) // 2]
    if len(names) % 2 or names[len(base) :] != [n + LEVEL for n in base]:
        raise DataError(
            f"the model's features {names[:4]}... are not each feature and its level, as "
            '[data] normalize = "cs_rank+level" makes them'
        )
    return base


def fit_robust(
    values: np.ndarray, valid: np.ndarray, dates: range, clip: float, block: int = 16
) -> Scaler:
    """Per-feature median and IQR / 1.349 over the valid rows of `dates` (training dates).

    Nothing outside `dates` is read. Takes `block` features at a time, so at most a
    (rows, block) slice of the training panel is copied.
    """
    F = values.shape[2]
    rows = valid[dates.start : dates.stop]  # (Dt, S)
    center = np.zeros(F, dtype=np.float32)
    scale = np.ones(F, dtype=np.float32)
    for f0 in range(0, F, block):
        xs = values[dates.start : dates.stop, :, f0 : f0 + block][rows]  # (n, block)
        for j in range(xs.shape[1]):
            x = xs[:, j]
            x = x[np.isfinite(x)]
            if x.size == 0:
                continue
            q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75])
            iqr = (q75 - q25) / 1.349
            if not iqr > 0:
                iqr = float(np.std(x))
            center[f0 + j] = q50
            scale[f0 + j] = iqr if iqr > 0 else 1.0
    return Scaler(center, scale, clip)


def identity(n_features: int, clip: float = math.inf) -> Scaler:
    """No centring or scaling (values raw, or already normalised per date)."""
    return Scaler(np.zeros(n_features, np.float32), np.ones(n_features, np.float32), clip)


def apply(
    x: torch.Tensor,
    center: torch.Tensor,
    scale: torch.Tensor,
    clip: float,
    levels: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Normalise a freshly gathered batch IN PLACE (it is a copy of the panel, never a view);
    `levels` (knots, positions) map its last features first (`Scaler`)."""
    if levels is not None:
        L = levels[0].shape[0]
        x[..., -L:] = to_levels(x[..., -L:], *levels)
    x = x.sub_(center).div_(scale).clamp_(-clip, clip)  # (T, B, F)
    return x.nan_to_num_(nan=0.0)
