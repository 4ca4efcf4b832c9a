"""Tiny long-format files for the data tests: every value can be checked by eye."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from data import DataConfig, Panel, load_panel

DAY0 = np.datetime64("2020-01-01")
FIRST = dt.date(2020, 1, 1)


def long_file(
    path: Path,
    n_dates: int,
    n_ids: int,
    columns: dict[str, Callable[[int, int], Any]],
    drop: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset(),
) -> Path:
    """Rows (date, id, *columns) for every date index d and id index s not in `drop`.

    Dates are consecutive days from 2020-01-01, ids are "S0", "S1", ...; each column is
    `fn(d, s)`, e.g. {"f0": lambda d, s: d * 100 + s}.
    """
    rows = [
        {"date": FIRST + dt.timedelta(days=d), "id": f"S{s}"}
        | {k: fn(d, s) for k, fn in columns.items()}
        for d in range(n_dates)
        for s in range(n_ids)
        if (d, s) not in drop
    ]
    df = pl.DataFrame(rows, infer_schema_length=None)
    if path.suffix == ".csv":
        df.write_csv(path)
    else:
        df.write_parquet(path)
    return path


def f0(d: int, s: int) -> float:
    return float(d * 100 + s)


def load(path: Path, **kw: Any) -> tuple[Panel, DataConfig]:
    """Load with a plain config: id column `id`, given `target`, raw values (no scaling)."""
    settings: dict[str, Any] = {"id": "id", "target": "target", "normalize": "none"}
    settings.update(kw)
    if settings["target"] is not None and "features" not in kw:
        settings["features"] = ("f*",)  # a given target takes only named features
    cfg = DataConfig(path=str(path), **settings)
    return load_panel(cfg), cfg
