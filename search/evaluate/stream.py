"""Predict one date at a time, as a live loop (a Kaggle inference API) hands dates over.

`StreamPredictor` loads a checkpoint once and keeps, per security, the rolling history its
windows need (`data.rolling.RollingPanel`); each date's rows give one prediction per row.
The features, valid rows, per-date normalisation, the checkpoint's scaler, the networks and
the ensemble's average are those `predict_file` uses, so a file fed date by date gets the
predictions `predict --dates all` gives it. `stream_file` does exactly that.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from data import DataError
from data.load import collect, parse_time, refuse_duplicates, scan, settle_types
from data.normalize import Scaler
from data.panel import time_axis
from data.prepared import PanelTensors
from data.rolling import RollingPanel
from search.evaluate.predict import (
    BLEND_COLUMN,
    THIN_SHARE,
    checkpoint_nets,
    checkpoint_tree,
    first_date,
    nothing_to_predict,
    prediction_columns,
    tree_columns,
    warn_thin,
)
from search.evaluate.retrain import TREE_COLUMN, EnsemblePredictor, data_config

if TYPE_CHECKING:
    import pandas as pd


class StreamPredictor:
    """A trained model fed one date's rows at a time (`predict`).

    The rows of a date need its time column, the id column (none for one series) and the
    model's input columns: the OHLCV columns its derived features read (with close whenever
    the target is the forward return), its own feature columns, and the tradable column when
    the study named one. Other columns are ignored. A prediction needs `time_steps`
    consecutive valid dates of the security (and the OHLCV look-back before them for derived
    features), as in training; a row without one gets a null prediction.
    """

    def __init__(self, ckpt: dict[str, Any], device: torch.device) -> None:
        settings = ckpt["data"]
        cfg = data_config(settings, str(settings.get("path") or "rows"))
        groups = checkpoint_nets(ckpt)
        self.time_steps = max(t for t, _ in groups)
        self.rolling = RollingPanel(cfg, list(ckpt["feature_names"]), self.time_steps)
        self.scaler = Scaler.from_record(ckpt["scaler"])
        self.device = device
        self._ensemble = EnsemblePredictor(self._tensors(), groups)
        self._tree = checkpoint_tree(ckpt, f"the model of study {ckpt.get('study_name')!r}")
        self._cross_section = int(ckpt.get("cross_section") or 0)
        self._said_thin = False

    @property
    def columns(self) -> list[str]:
        """The columns each date's rows need."""
        return list(self.rolling.columns)

    @property
    def history(self) -> int:
        """Dates before a prediction's date that it reads (time_steps - 1, plus the OHLCV
        look-back for derived features)."""
        return self.rolling.history

    def predict(self, rows: pl.DataFrame | pd.DataFrame) -> pl.DataFrame | pd.DataFrame:
        """Predictions for one date's rows (a polars or pandas DataFrame; the same kind
        back): one row per row given, in their order, with the time column, the id column and
        `prediction` (a classifier's: the most likely class, and prob_k per class), null
        where the security has no window yet; where the checkpoint keeps the verdict's tree,
        its prediction (lgbm) and the 50/50 rank blend (blend) too, as `predict` writes
        them. Raises DataError, the predictor unchanged, when the rows lack a column the
        model needs, hold several dates, a date not after the previous one, or an id twice."""
        frame = _polars(rows)
        step = self.rolling.push(frame)
        cfg = self.rolling.cfg
        thin = frame.height < THIN_SHARE * self._cross_section
        if cfg.normalize.startswith("cs_") and thin and not self._said_thin:
            self._said_thin = True  # once per predictor: a live loop is not flooded
            warn_thin(
                f"{frame.height} rows for {step.dates[0] if len(step.dates) else 'a date'}, "
                f"far fewer securities than the training dates (95% of them held "
                f"{self._cross_section} or more)",
                cfg.normalize,
                stacklevel=3,
                then="; said once",
            )
        cols: dict[str, Any] = {self.rolling.time: step.dates}
        if self.rolling.id:
            cols[self.rolling.id] = frame.get_column(self.rolling.id)
        pred, beside = self._scores(step.slots[step.ready])
        ready = pl.Series(step.ready)
        for name, x in (prediction_columns(pred) | beside).items():
            full = np.zeros(frame.height, dtype=x.dtype)
            full[step.ready] = x
            cols[name] = pl.select(pl.when(ready).then(pl.Series(full))).to_series()
        out = pl.DataFrame(cols)
        if isinstance(rows, pl.DataFrame):
            return out
        df = out.to_pandas()
        df.index = rows.index
        return df

    def _tensors(self) -> PanelTensors:
        return PanelTensors(self.rolling.panel(), self.rolling.cfg, self.device, [self.scaler])

    def _scores(self, slots: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(N,) predictions (or (N, C) class log-probabilities) of the windows ending on the
        last date at `slots`; beside them the tree's and the blend's columns, if any."""
        ends = (self.time_steps - 1) * self.rolling.n_slots + slots
        if len(slots) == 0:
            n_out = self._ensemble.n_outputs
            pred = np.zeros((0,) if n_out == 1 else (0, n_out), dtype=np.float32)
            empty = np.zeros(0, dtype=np.float32)
            return pred, {} if self._tree is None else {
                n: empty for n in (TREE_COLUMN, BLEND_COLUMN)
            }
        tensors = self._tensors()
        ensemble = self._ensemble.on(tensors)
        with torch.inference_mode():
            pred = ensemble(torch.as_tensor(ends).to(self.device)).cpu().numpy()
            beside = {} if self._tree is None else tree_columns(self._tree, tensors, ends, pred)
        return pred, beside


def _polars(rows: Any) -> pl.DataFrame:
    if isinstance(rows, pl.DataFrame):
        return rows
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(rows, pd.DataFrame):
        return pl.from_pandas(rows)
    raise DataError(f"rows: expected a polars or pandas DataFrame, got {type(rows).__name__}")


def stream_file(
    ckpt: dict[str, Any], data_path: str, dates: str, device: torch.device
) -> pl.DataFrame:
    """The file at `data_path` fed to a StreamPredictor one date at a time, in date order:
    the predictions on the chosen dates ("last", "test" or "all", as `predict_file` has
    them), rows without one left out, sorted by date then id (as text, as `predict_file`
    writes ids). Only the dates the chosen ones need are fed."""
    predictor = StreamPredictor(ckpt, device)
    cfg = replace(predictor.rolling.cfg, path=data_path)
    axis = time_axis(cfg)
    first, start = first_date(axis, cfg, dates, predictor.history)
    path = Path(data_path)
    ids = [predictor.rolling.id] if predictor.rolling.id else []  # as a file's panel reads it
    lf, _ = settle_types(scan(path, ids), path, ids)
    names = [c for c in predictor.columns if c in lf.collect_schema()]
    time, key = predictor.rolling.time, predictor.rolling.time_key
    frame = collect(lf.select(names), path, names)
    frame = frame.with_columns(parse_time(frame.get_column(time), key, path))
    if first is not None:
        frame = frame.filter(pl.col(time) >= first)
    keep = {"last": pl.col(time) == axis[-1], "all": pl.lit(True)}.get(dates)
    if keep is None:  # the test segment; none when `start` is None
        keep = pl.col(time) >= start if start is not None else pl.lit(False)
    ident = predictor.rolling.id
    refuse_duplicates(frame, time, ident, path)  # before any date is fed, as the file path
    parts = []
    for rows in frame.sort(time, maintain_order=True).partition_by(time, maintain_order=True):
        try:
            out = predictor.predict(rows)
        except DataError as e:  # a date's rows that cannot be taken in: name the file too
            raise DataError(f"{path}: {e}") from None
        assert isinstance(out, pl.DataFrame)
        parts.append(out.filter(keep & pl.col("prediction").is_not_null()))
    out = pl.concat(parts)
    if out.height == 0:
        raise nothing_to_predict(data_path, dates, predictor.time_steps, len(axis))
    if ident:
        out = out.with_columns(pl.col(ident).cast(pl.String)).sort(time, ident)
    return out
