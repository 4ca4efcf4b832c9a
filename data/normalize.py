"""Feature scaling fitted on training dates only, applied to each gathered batch."""

from __future__ import annotations

from dataclasses import dataclass

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


def fit_robust(values: np.ndarray, valid: np.ndarray, dates: range, clip: float) -> Scaler:
    """Per-feature median and IQR / 1.349 over the valid rows of `dates` (training dates).

    Goes one feature at a time so no copy of the training panel is made.
    """
    F = values.shape[2]
    rows = valid[dates.start : dates.stop]
    center = np.zeros(F, dtype=np.float32)
    scale = np.ones(F, dtype=np.float32)
    for f in range(F):
        x = values[dates.start : dates.stop, :, f][rows]
        x = x[np.isfinite(x)]
        if x.size == 0:
            continue
        q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75])
        iqr = (q75 - q25) / 1.349
        if not iqr > 0:
            iqr = float(np.std(x))
        center[f] = q50
        scale[f] = iqr if iqr > 0 else 1.0
    return Scaler(center, scale, clip)


def identity(n_features: int, clip: float) -> Scaler:
    """No centring or scaling (values already normalised per date), still clipped."""
    return Scaler(np.zeros(n_features, np.float32), np.ones(n_features, np.float32), clip)


def apply(x: torch.Tensor, center: torch.Tensor, scale: torch.Tensor, clip: float) -> torch.Tensor:
    x = ((x - center) / scale).clamp_(-clip, clip)  # (T, B, F)
    return torch.nan_to_num_(x, nan=0.0)
