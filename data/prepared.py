"""Everything a worker's trials share: the panel on the device, the split, scaler, windows."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from data.config import DataConfig
from data.errors import DataError
from data.normalize import Scaler, apply, fit_robust, identity
from data.panel import Panel
from data.split import Split, make_split
from data.windows import WindowIndex, gather


@dataclass
class Batch:
    x: torch.Tensor  # (T, B, F) normalised
    y: torch.Tensor  # (B,)
    w: torch.Tensor | None  # (B,)
    date: torch.Tensor  # (B,) date index of each window's end


class Prepared:
    """One panel serving every trial of a worker: device tensors built once, window end
    points cached per time_steps. A trial allocates only its model and one batch at a time."""

    def __init__(self, panel: Panel, cfg: DataConfig, device: torch.device) -> None:
        self.panel = panel
        self.cfg = cfg
        self.device = device
        self.split: Split = make_split(panel.dates, cfg)
        self.windows = WindowIndex(panel.valid, panel.labelled)
        F = panel.values.shape[2]
        if cfg.normalize == "robust":
            self.scaler: Scaler = fit_robust(panel.values, panel.valid, self.split.train, cfg.clip)
        elif cfg.normalize == "none":
            self.scaler = identity(F)
        else:  # per-date normalisation, already applied by load_panel
            self.scaler = identity(F, cfg.clip)
        self.values = torch.as_tensor(panel.values).to(device)  # (D, S, F)
        self.target = torch.as_tensor(panel.target).to(device)  # (D, S)
        self.weight = None if panel.weight is None else torch.as_tensor(panel.weight).to(device)
        self.center, self.scale = self.scaler.to(device)
        self._ends: dict[tuple[str, int], torch.Tensor] = {}

    @property
    def n_features(self) -> int:
        return int(self.values.shape[2])

    @property
    def n_securities(self) -> int:
        return int(self.values.shape[1])

    def ends(self, segment: str, time_steps: int) -> torch.Tensor:
        """End points of `segment` ('train', 'val', 'test') on the device, cached."""
        key = (segment, time_steps)
        if key not in self._ends:
            dates = getattr(self.split, segment)
            stride = self.cfg.stride if segment == "train" else 1
            e = self.windows.ends(time_steps, dates, stride)
            self._ends[key] = torch.as_tensor(e).to(self.device)
        return self._ends[key]

    def count(self, segment: str, time_steps: int) -> int:
        dates = getattr(self.split, segment)
        stride = self.cfg.stride if segment == "train" else 1
        return int(len(self.windows.ends(time_steps, dates, stride)))

    def check_time_steps(self, max_time_steps: int) -> None:
        """Refuse a panel too short for the longest window the search may ask for."""
        for seg in ("train", "val"):
            if self.count(seg, max_time_steps) == 0:
                dates = getattr(self.split, seg)
                raise DataError(
                    f"{self.panel.source}: no {seg} window of time_steps={max_time_steps}: the "
                    f"{seg} segment has {len(dates)} dates and no security has {max_time_steps} "
                    f"consecutive valid dates ending in it; lower [space] time_steps or use "
                    "more dates"
                )

    def batch(self, ends: torch.Tensor, time_steps: int) -> Batch:
        x = gather(self.values, ends, time_steps)  # (T, B, F), a copy
        x = apply(x, self.center, self.scale, self.scaler.clip)  # (T, B, F), in place
        S = self.values.shape[1]
        d, s = ends // S, ends % S
        y = self.target[d, s]  # (B,)
        w = None if self.weight is None else self.weight[d, s]
        return Batch(x, y, w, d)
