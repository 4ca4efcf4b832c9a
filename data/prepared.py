"""Everything a worker's trials share: the panel on the device, the split, scaler, windows."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from data.config import DataConfig
from data.errors import SegmentError, plural
from data.normalize import Scaler, apply, fit_levels, fit_robust, identity, to_levels
from data.panel import Panel
from data.split import Split, make_folds, make_split
from data.windows import Recent, WindowIndex, gather


@dataclass
class Batch:
    x: torch.Tensor  # (T, B, F) normalised
    y: torch.Tensor  # (B,)
    w: torch.Tensor | None  # (B,)
    date: torch.Tensor  # (B,) date index of each window's end


def _fit_scaler(panel: Panel, cfg: DataConfig, train: range) -> Scaler:
    F = panel.values.shape[2]
    if cfg.normalize == "robust":
        return fit_robust(panel.values, panel.valid, train, cfg.clip)
    if cfg.normalize == "none":
        return identity(F)
    if cfg.normalize == "cs_rank+level":  # ranks from load_panel, levels fitted here
        knots, positions = fit_levels(panel.values, panel.valid, train, F // 2)
        return replace(identity(F, cfg.clip), knots=knots, positions=positions)
    return identity(F, cfg.clip)  # per-date normalisation, applied by load_panel


class PanelTensors:
    """The panel on the device, and batches gathered from it and normalised with fitted
    scalers (one per fold; the last is the plain split's): enough to predict."""

    def __init__(
        self, panel: Panel, cfg: DataConfig, device: torch.device, scalers: list[Scaler]
    ) -> None:
        self.panel = panel
        self.cfg = cfg
        self.device = device
        self.scalers = scalers
        self.scaler: Scaler = scalers[-1]
        self.values = torch.as_tensor(panel.values).to(device)  # (D, S, F)
        self.target = torch.as_tensor(panel.target).to(device)  # (D, S)
        self.weight = None if panel.weight is None else torch.as_tensor(panel.weight).to(device)
        centers, scales = zip(*(s.to(device) for s in scalers), strict=True)
        self.centers = torch.stack(centers)  # (K, F)
        self.scales = torch.stack(scales)  # (K, F)
        self.center, self.scale = self.centers[-1], self.scales[-1]
        levels = [s.levels_to(device) for s in scalers]
        self.levels: tuple[torch.Tensor, torch.Tensor] | None = None  # (K, L, Q) each
        if all(lv is not None for lv in levels):
            knots, positions = zip(*levels, strict=True)
            self.levels = (torch.stack(knots), torch.stack(positions))

    @property
    def n_features(self) -> int:
        return int(self.values.shape[2])

    @property
    def n_securities(self) -> int:
        return int(self.values.shape[1])

    def batch(
        self, ends: torch.Tensor, time_steps: int, folds: torch.Tensor | None = None
    ) -> Batch:
        """Windows ending at `ends`: (B,) -> x (T, B, F), y (B,); or, for members, (M, B)
        end points with each member's fold (M,) -> x (T, M, B, F) normalised with that
        fold's scaler, y (M, B)."""
        x = gather(self.values, ends.reshape(-1), time_steps)  # (T, M*B or B, F), a copy
        levels = None
        if ends.dim() == 2:
            M, B = ends.shape
            x = x.view(time_steps, M, B, -1)  # (T, M, B, F)
            idx = folds if folds is not None else torch.full((M,), -1, device=ends.device)
            center = self.centers[idx][:, None]  # (M, 1, F)
            scale = self.scales[idx][:, None]
            if self.levels is not None:  # each member's fold maps its own levels
                knots, positions = self.levels
                for m in range(M):
                    L = knots.shape[1]
                    x[:, m, :, -L:] = to_levels(x[:, m, :, -L:], knots[idx[m]], positions[idx[m]])
        else:
            center, scale = self.center, self.scale
            if self.levels is not None:
                levels = (self.levels[0][-1], self.levels[1][-1])
        x = apply(x, center, scale, self.scaler.clip, levels)  # in place
        S = self.values.shape[1]
        d, s = ends // S, ends % S
        y = self.target[d, s]
        w = None if self.weight is None else self.weight[d, s]
        return Batch(x, y, w, d)


class Prepared(PanelTensors):
    """One panel serving every trial of a worker: device tensors built once, window end
    points cached per time_steps. A trial allocates only its model and one batch at a time.

    `eval_time_steps` fixes the population scored on validation and test: a window ending
    there is scored only when `eval_time_steps` (the longest time_steps the search may try)
    consecutive dates are valid, so every trial, whatever its own time_steps, is scored on
    the same rows. Folds (`[data] folds`) share the test segment; each has its own
    training-date scaler; fold -1 (the last) is the plain train / validation split.
    """

    def __init__(
        self, panel: Panel, cfg: DataConfig, device: torch.device, eval_time_steps: int = 1
    ) -> None:
        self.eval_time_steps = eval_time_steps
        self.split: Split = make_split(panel.dates, cfg)
        self.folds: list[Split] = make_folds(self.split, cfg, len(panel.dates))
        # a trial asks for about four sets of end points a fold (its training windows, the
        # validation windows of its reports and of its value, the test's): room for them all
        keep = max(16, 4 * len(self.folds))
        self.windows = WindowIndex(panel.valid, panel.labelled, keep)
        scalers = [_fit_scaler(panel, cfg, f.train) for f in self.folds]
        super().__init__(panel, cfg, device, scalers)
        self._ends: Recent[torch.Tensor] = Recent(keep)

    @property
    def n_folds(self) -> int:
        return len(self.folds)

    def _where(self, segment: str, time_steps: int, fold: int) -> tuple[int, range, int]:
        """(time_steps, dates, stride) of the window index query for `segment`."""
        dates = getattr(self.folds[fold], segment)
        if segment == "train":
            return time_steps, dates, self.cfg.stride
        return max(time_steps, self.eval_time_steps), dates, 1

    def ends(
        self,
        segment: str,
        time_steps: int,
        fold: int = -1,
        max_dates: int = 0,
        max_windows: int = 0,
    ) -> torch.Tensor:
        """End points of `segment` ('train', 'val', 'test') of `fold` on the device (the most
        recent kept).

        `max_dates` > 0 keeps only a fixed, evenly spaced subset of at most that many of the
        segment's dates (every k-th date from its start); `max_windows` > 0 then keeps a
        fixed random subset (seed 0, in date order) of at most that many of those windows:
        fewer securities per date, the same dates."""
        fold %= self.n_folds
        T, dates, stride = self._where(segment, time_steps, fold)

        def make() -> torch.Tensor:
            e = self.windows.ends(T, dates, stride)
            if max_dates and len(dates) > max_dates:
                k = -(-len(dates) // max_dates)  # ceil
                S = self.n_securities
                e = e[(e // S - dates.start) % k == 0]
            if 0 < max_windows < len(e):
                pick = np.random.default_rng(0).choice(len(e), max_windows, replace=False)
                e = e[np.sort(pick)]
            return torch.as_tensor(e).to(self.device)

        # validation and test windows are of max(time_steps, eval_time_steps): one key for all
        return self._ends.get((segment, T, fold, max_dates, max_windows), make)

    def count(self, segment: str, time_steps: int, fold: int = -1) -> int:
        return int(len(self.windows.ends(*self._where(segment, time_steps, fold % self.n_folds))))

    def check_cross_section(self, min_count: int = 5) -> None:
        """Refuse a panel whose validation dates never have `min_count` securities with a
        window: a per-date statistic across securities (a correlation) is undefined there."""
        if self.n_securities == 1:
            return
        e = self.ends("val", self.eval_time_steps)
        counts = torch.bincount(e // self.n_securities)
        most = int(counts.max()) if len(counts) else 0
        if most < min_count:
            raise SegmentError(
                self.panel.source,
                f"no validation date has {min_count} securities with a window (at most {most} "
                f"of {self.n_securities} on any of its {len(self.split.val)} dates)",
            )

    def segment_without_window(self, time_steps: int) -> tuple[str, int] | None:
        """The first fold's train or validation segment where no security has `time_steps`
        consecutive valid dates, as (its name, its number of dates); None when none."""
        for k in range(self.n_folds):
            for seg in ("train", "val"):
                if self.count(seg, time_steps, k) == 0:
                    which = f"fold {k + 1}'s {seg}" if self.n_folds > 1 else seg
                    return which, len(getattr(self.folds[k], seg))
        return None

    def check_time_steps(self, max_time_steps: int) -> None:
        """Refuse a panel too short for the longest window the search may ask for."""
        short = self.segment_without_window(max_time_steps)
        if short is not None:
            which, n = short
            raise SegmentError(
                self.panel.source,
                f"no {which} window of time_steps={max_time_steps}: the {which} segment has "
                f"{plural(n, 'date')} and no security has {max_time_steps} consecutive valid dates "
                "ending in it",
            )
