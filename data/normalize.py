"""Feature scaling fitted on training dates only, applied to each gathered batch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Scaler:
    """x -> clip((x - center) / scale, -clip, clip), then NaN -> 0 (the feature's centre)."""

    center: np.ndarray  # (F,) float32
    scale: np.ndarray  # (F,) float32
    clip: float

    def to(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.as_tensor(self.center, device=device),
            torch.as_tensor(self.scale, device=device),
        )

    def record(self) -> dict[str, torch.Tensor | float]:
        """As a checkpoint keeps it (tensors and a float: `torch.load(weights_only=True)`)."""
        return {
            "center": torch.as_tensor(self.center),
            "scale": torch.as_tensor(self.scale),
            "clip": float(self.clip),
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Scaler:
        return cls(rec["center"].numpy(), rec["scale"].numpy(), float(rec["clip"]))


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


def apply(x: torch.Tensor, center: torch.Tensor, scale: torch.Tensor, clip: float) -> torch.Tensor:
    """Normalise a freshly gathered batch IN PLACE (it is a copy of the panel, never a view)."""
    x = x.sub_(center).div_(scale).clamp_(-clip, clip)  # (T, B, F)
    return x.nan_to_num_(nan=0.0)
