"""A dense panel fed one date at a time: the rolling history a trained model's windows need.

Each date's rows go through the panel's own code (`data.panel.tradable_rows`,
`data.features.ohlcv_features`, `data.panel.valid_rows`) on a small dense (dates x
securities) buffer, so a date's features, its valid rows and its per-date normalisation are
those `load_panel` gives the same date of a file that holds every date so far:

- the OHLCV columns of the dates before the new one that its derived features read (only when the
  model has features derived from OHLCV), from which the new date's features are derived;
- the features of the last `time_steps` dates (per-date normalised when the model's
  normalisation is per date) and whether each row was valid: a window ends on a security
  when all `time_steps` dates are valid for it, as `data.windows` has it.

A row's share of missing features is taken over the model's own features; tied values share
their average per-date rank, whatever the order of the rows or slots. A security keeps its slot
while it is listed; a new id takes a free slot (or a new one) with no history. A security
absent (no row) on a date, or present but not tradable, or with more than `max_missing` of
its features missing, has an invalid row there, which breaks its run of valid dates. One
absent on the last `time_steps + look-back` dates can no longer be in a window or feed a
feature: it is forgotten and its slot freed; should it come back, it starts again with no
history, as a new listing does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from data.config import DataConfig
from data.errors import DataError
from data.features import OHLCV_FEATURES, OHLCV_NEEDS, ohlcv_features, ohlcv_lookback
from data.load import parse_time, refuse_infinite
from data.normalize import source_features
from data.panel import Panel, tradable_rows, valid_rows


# The OHLCV roles each derived feature reads besides close.
@dataclass(frozen=True)
class Step:
    """One date taken in: its rows' parsed time column, their slots, and which of them end a
    window of `time_steps` valid dates (their order is the rows')."""

    dates: pl.Series
    slots: np.ndarray  # (N,) int64
    ready: np.ndarray  # (N,) bool


@dataclass(frozen=True)
class _Rows:
    """One date's rows, read and checked: nothing of the panel changed yet."""

    dates: pl.Series
    date: Any
    ids: list[str]
    ohlcv: dict[str, np.ndarray]  # role -> (N,) float64
    factors: np.ndarray  # (N, F_raw) float32
    tradable: np.ndarray | None  # (N,) float32


class RollingPanel:
    """The last dates of a panel, for a model of `feature_names` (its features in its order)
    and windows of `time_steps` dates, with the data settings `cfg` it was trained with."""

    def __init__(self, cfg: DataConfig, feature_names: list[str], time_steps: int) -> None:
        self.cfg = cfg
        self.feature_names = list(feature_names)
        self.time_steps = int(time_steps)
        base = source_features(cfg.normalize, self.feature_names)
        self.base = base  # the features a date's rows give (levels copy them)
        derived = [n for n in base if n in OHLCV_FEATURES]
        self.derived = bool(derived)
        self.factors = [n for n in base if n not in OHLCV_FEATURES]
        self.lookback = ohlcv_lookback(derived)
        # close for derived features, and as in a file's panel for a forward-return target
        needed = {"close"} if derived or not cfg.target else set()
        needed |= {r for n in derived for r in OHLCV_NEEDS.get(n, set())}
        roles = ("open", "high", "low", "close", "volume")
        self.roles = {r: str(getattr(cfg, r)) for r in roles if r in needed}  # role -> column
        self.time = cfg.order or cfg.date
        self.time_key = "order" if cfg.order else "date"
        self.id = cfg.id or None
        self.last_date: Any = None
        self.step = -1
        self.ids: list[str | None] = []  # slot -> id; None: a free slot
        self.slot: dict[str, int] = {}
        self.free: list[int] = []
        T, F = self.time_steps, len(self.feature_names)
        self.values = np.full((T, 0, F), np.nan, dtype=np.float32)  # (T, S, F)
        self.valid = np.zeros((T, 0), dtype=bool)  # (T, S)
        self.ohlcv = {r: np.full((self.lookback + 1, 0), np.nan) for r in self.roles}
        self.last_seen = np.zeros(0, dtype=np.int64)  # (S,) the step of the last row
        self._id_array: np.ndarray | None = None  # self.ids as an array

    @property
    def columns(self) -> dict[str, str]:
        """The columns a date's rows need -> what each is."""
        need = {self.time: f"[data] {self.time_key}"}
        if self.id:
            need[self.id] = "[data] id"
        need |= {c: f"[data] {r}" for r, c in self.roles.items()}
        need |= {c: "a model feature" for c in self.factors}
        if self.cfg.tradable:
            need[self.cfg.tradable] = "[data] tradable"
        return need

    @property
    def history(self) -> int:
        """Dates before a window's end that its prediction reads: time_steps - 1, and the
        OHLCV look-back when features are derived."""
        return self.time_steps - 1 + self.lookback

    @property
    def n_slots(self) -> int:
        return len(self.ids)

    def push(self, frame: pl.DataFrame) -> Step:
        """Take in one date's rows (a DataError, leaving the panel as it was, when they cannot
        be: a missing column, several dates, a date not after the last one, an id twice)."""
        rows = self._read(frame)
        self.step += 1
        self.last_date = rows.date
        slots = self._slots(rows.ids)
        self._roll()
        self.last_seen[slots] = self.step
        new, ok = self._date(rows, slots)
        self.valid[-1] = valid_rows(new, ok, self.cfg)[0]  # normalises `new` in place
        self.values[-1] = new[0]
        ready = np.asarray(self.valid.all(axis=0))[slots]
        self._forget()
        return Step(rows.dates, slots, ready)

    def panel(self) -> Panel:
        """The last `time_steps` dates as a Panel (no labels): the window of slot s ends at
        flat point (time_steps - 1) * n_slots + s."""
        T, S = self.valid.shape
        return Panel(
            values=self.values,
            target=np.full((T, S), np.nan, dtype=np.float32),
            valid=self.valid,
            dates=np.arange(T),
            ids=self._keys(),
            feature_names=self.feature_names,
            source="rows",
        )

    def _read(self, frame: pl.DataFrame) -> _Rows:
        if frame.height == 0:
            raise DataError("rows: none given; expected one date's rows")
        need = self.columns
        lacking = [f"{c!r} ({what})" for c, what in need.items() if c not in frame.columns]
        if lacking:
            raise DataError(
                f"rows: column(s) {', '.join(lacking)} not found; the rows' columns are "
                f"{frame.columns[:30]}" + (" ..." if frame.width > 30 else "")
            )
        dates = parse_time(frame.get_column(self.time), self.time_key, Path("rows"))
        date = self._date_after_last(dates)
        where = Path(f"rows of {_shown(date)}")
        ids = self._ids(frame, where)
        infinite: dict[str, int] = {}
        ohlcv = {r: _numbers(frame, c, pl.Float64, where, infinite) for r, c in self.roles.items()}
        factors = np.zeros((frame.height, len(self.factors)), dtype=np.float32)
        for j, c in enumerate(self.factors):
            factors[:, j] = _numbers(frame, c, pl.Float32, where, infinite)
        refuse_infinite(where, infinite)
        tradable = None
        if self.cfg.tradable:
            tradable = _numbers(frame, self.cfg.tradable, pl.Float32, where, None)
        return _Rows(dates, date, ids, ohlcv, factors, tradable)

    def _date_after_last(self, dates: pl.Series) -> Any:
        if dates.min() != dates.max():
            n = dates.n_unique()
            raise DataError(
                f"rows: {n} dates ({_shown(dates.min())} to {_shown(dates.max())}) in one call; "
                "expected the rows of one date"
            )
        date = dates[0]
        if self.last_date is not None:
            try:
                later = bool(_instant(date) > _instant(self.last_date))
            except TypeError:
                raise DataError(
                    f"rows of {_shown(date)}: its {self.time_key} ({type(date).__name__}) cannot "
                    f"be compared with the previous one, {_shown(self.last_date)} "
                    f"({type(self.last_date).__name__})"
                ) from None
            if not later:
                raise DataError(
                    f"rows of {_shown(date)}: not after the previous date, "
                    f"{_shown(self.last_date)}; "
                    "give each date once, in increasing order"
                )
        return date

    def _ids(self, frame: pl.DataFrame, where: Path) -> list[str]:
        if not self.id:
            if frame.height > 1:
                raise DataError(f"{where}: {frame.height} rows of one series; expected one")
            return ["series"]
        sid = frame.get_column(self.id)
        if sid.null_count():
            raise DataError(f"{where}: column {self.id!r} ([data] id) has empty values")
        sid = sid.cast(pl.String)
        dup = sid.filter(sid.is_duplicated()).unique(maintain_order=True)
        if len(dup):
            raise DataError(
                f"{where}: {len(dup)} id(s) on more than one row, e.g. {dup[0]!r} "
                f"(column {self.id!r}); expected one row per id"
            )
        return list(sid.to_list())

    def _slots(self, ids: list[str]) -> np.ndarray:
        """The slots of `ids`; a new id takes a free slot, else one added at the end."""
        new = [i for i in ids if i not in self.slot]
        if len(new) > len(self.free):
            self._grow(len(new) - len(self.free))
        for i in new:
            s = self.free.pop()
            self.slot[i] = s
            self.ids[s] = i
        if new:
            self._id_array = None
        return np.fromiter((self.slot[i] for i in ids), dtype=np.int64, count=len(ids))

    def _grow(self, n: int) -> None:
        S = self.n_slots
        add = max(n, S // 2)
        self.values = np.concatenate(
            [
                self.values,
                np.full((self.time_steps, add, self.values.shape[2]), np.nan, np.float32),
            ],
            axis=1,
        )
        self.valid = np.concatenate([self.valid, np.zeros((self.time_steps, add), bool)], axis=1)
        for r, x in self.ohlcv.items():
            self.ohlcv[r] = np.concatenate([x, np.full((self.lookback + 1, add), np.nan)], axis=1)
        self.last_seen = np.concatenate([self.last_seen, np.full(add, self.step, np.int64)])
        self.ids += [None] * add
        self.free += list(range(S + add - 1, S - 1, -1))  # popped from the end: in order

    def _roll(self) -> None:
        """Every buffer one date on: its oldest date dropped, the new one empty."""
        for x in (self.values, self.valid, *self.ohlcv.values()):
            x[:-1] = x[1:]
        self.values[-1] = np.nan
        self.valid[-1] = False
        for x in self.ohlcv.values():
            x[-1] = np.nan

    def _date(self, rows: _Rows, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(1, S, F) features of the new date, not yet normalised per date, and (1, S) its
        present and tradable rows: the panel's code on the buffers."""
        S = self.n_slots
        present = np.zeros((1, S), dtype=bool)
        present[0, slots] = True
        tradable = None
        if rows.tradable is not None:
            tradable = np.full((1, S), np.nan, dtype=np.float32)
            tradable[0, slots] = rows.tradable
        for r, x in self.ohlcv.items():
            x[-1, slots] = rows.ohlcv[r]
        ok = tradable_rows(present, tradable, {r: x[-1:] for r, x in self.ohlcv.items()})
        new = np.full((1, S, len(self.base)), np.nan, dtype=np.float32)
        if self.derived:
            at = {n: j for j, n in enumerate(self.base)}
            for name, x in ohlcv_features(self.ohlcv, self.cfg.ohlcv_set):
                if name in at:
                    new[0, :, at[name]] = x[-1]
        for j, name in enumerate(self.factors):
            new[0, slots, self.base.index(name)] = rows.factors[:, j]
        if len(self.base) < len(self.feature_names):
            new = np.concatenate([new, new], axis=2)  # and their levels
        return new, ok

    def _keys(self) -> np.ndarray:
        """(S,) str: each slot's id ("" for a free slot)."""
        if self._id_array is None:
            self._id_array = np.array([i or "" for i in self.ids], dtype=str)
        return self._id_array

    def _forget(self) -> None:
        """Free the slots of the securities absent on the last time_steps + look-back dates."""
        stale = np.flatnonzero(self.step - self.last_seen >= self.time_steps + self.lookback)
        gone = [int(s) for s in stale if self.ids[s] is not None]
        for s in gone:
            del self.slot[str(self.ids[s])]
            self.ids[s] = None
            self.values[:, s] = np.nan
            self.valid[:, s] = False
            for x in self.ohlcv.values():
                x[:, s] = np.nan
        if gone:
            self.free += sorted(gone, reverse=True)
            self._id_array = None


def _numbers(
    frame: pl.DataFrame, col: str, dtype: Any, where: Path, infinite: dict[str, int] | None
) -> np.ndarray:
    """Column `col` as numbers of `dtype` (NaN where empty); its infinite values counted in
    `infinite` (when given)."""
    given = frame.schema[col]
    if not (given.is_numeric() or given in (pl.Boolean, pl.Null)):
        raise DataError(f"{where}: column {col!r} has type {given}, expected numbers")
    x = frame.get_column(col).cast(dtype).to_numpy()
    if infinite is not None and np.isinf(x).any():
        infinite[col] = int(np.isinf(x).sum())
    return np.asarray(x)


def _instant(t: Any) -> Any:
    """A date as the datetime of its midnight (a pandas frame has no dates, only datetimes),
    so the dates of polars and pandas rows compare; other values as they are."""
    if isinstance(t, dt.date) and not isinstance(t, dt.datetime):
        return dt.datetime.combine(t, dt.time())
    return t


def _shown(t: Any) -> str:
    """A date, or a datetime at midnight (a pandas frame's date), as 2019-01-02, so the same
    date reads the same from polars and pandas rows; other values as they are."""
    if isinstance(t, dt.datetime) and t.tzinfo is None and t.time() == dt.time():
        return str(t.date())
    return str(t)
