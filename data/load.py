"""Read a long (date, id, columns...) file with polars and check it before anything uses it."""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from data.columns import Columns
from data.errors import DataError, plural
from data.errors import DataWarning as DataWarning  # where callers import it from

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv"}
# Read as missing in a CSV file (as an empty field is): a numeric column holding one of these
# stays numeric instead of turning into a string column.
MISSING_MARKERS = (
    "", "NA", "N/A", "n/a", "na", "NaN", "nan", "-NaN", "-nan", "null", "NULL", "None", "-",
    "<NA>", "#N/A", "#N/A N/A", "#NA", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!",
)  # fmt: skip
# Rows of a CSV file its column types are first guessed from (see `settle_types`).
INFER_ROWS = 10_000
# Columns read per pass when filling the dense panel: bounds the frame held beside the panel.
CHUNK_COLUMNS = 16


def scan(path: Path, text: Collection[str] = ()) -> pl.LazyFrame:
    """A lazy frame over `path`, or a DataError naming the file; `text`: see `scan_rows`."""
    return scan_rows(path, text)[0]


def scan_rows(path: Path, text: Collection[str] = ()) -> tuple[pl.LazyFrame, int]:
    """A lazy frame over `path` and its row count, or a DataError naming the file.

    The columns `text` of a CSV file (the id) are read as text, whatever they look like: an
    A-share code 000001 stays 000001, not the number 1.
    """
    if not path.exists():
        raise DataError(f"{path}: file not found ([data] path / --data)")
    if path.is_dir():
        raise DataError(
            f"{path}: is a folder ([data] path / --data), expected a Parquet or CSV file"
        )
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{path}: unknown file type {path.suffix!r} ([data] path / --data), "
            f"expected one of {sorted(SUFFIXES)}"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty ([data] path / --data), expected {kind} data")
    if kind == "csv":
        _check_header(path)
    try:
        lf = pl.scan_parquet(path) if kind == "parquet" else _scan_csv(path, text=text)
        lf.collect_schema()
        n_rows = lf.select(pl.len()).collect().item()
    except Exception as e:  # polars raises many types for unreadable files
        raise DataError(f"{path}: cannot be read as {kind}: {_first_line(e)}") from None
    if n_rows == 0:
        raise DataError(f"{path}: file has no rows ([data] path / --data)")
    return lf, int(n_rows)


# a time of day followed by a UTC offset (Z, +08:00, -0500, +08): the offset is dropped
DIALECT_ROWS = 50  # lines read to tell a CSV's separator and decimal mark
_DECIMAL_COMMA = re.compile(r"[-+]?\d+,\d+(?:[eE][-+]?\d+)?")
_OFFSET = r"^(.*\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


def _dialect(path: Path) -> tuple[str, bool]:
    """The separator and whether the comma is the decimal mark. A .tsv file's tab; else a
    comma, unless the header line holds none outside its quotes but semicolons or tabs; a
    semicolon file whose first rows hold a number written 1,5 reads the comma as the
    decimal mark (as spreadsheets where it is write CSV). Read once per state of the file
    (a load scans it up to three times)."""
    if path.suffix.lower() == ".tsv":
        return "\t", False
    try:
        st = path.stat()
    except OSError:
        return ",", False  # the read that follows says why
    return _sniffed(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _sniffed(path: Path, mtime_ns: int, size: int) -> tuple[str, bool]:
    """`_dialect` of the file at `path` as it is at (`mtime_ns`, `size`)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            lines = [f.readline() for _ in range(DIALECT_ROWS)]
    except OSError:
        return ",", False  # the read that follows says why
    header = re.sub(r'"[^"]*"', "", lines[0])  # a quoted name may hold any of them
    if "," in header:
        return ",", False
    for sep in (";", "\t"):
        if sep in header:
            fields = (x.strip().strip('"') for row in lines[1:] for x in row.split(sep))
            return sep, sep == ";" and any(_DECIMAL_COMMA.fullmatch(x) for x in fields)
    return ",", False


def _check_header(path: Path) -> None:
    """Refuse a CSV file whose header names a column twice (polars would rename the second
    `close_duplicated_0` and read it as one more column)."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            header = next(csv.reader(f, delimiter=_dialect(path)[0]), [])
    except (OSError, csv.Error) as e:
        raise DataError(f"{path}: cannot be read as csv: {_first_line(e)}") from None
    seen: dict[str, list[int]] = {}
    for j, name in enumerate(header, start=1):
        seen.setdefault(name, []).append(j)
    twice = {n: js for n, js in seen.items() if len(js) > 1}
    if twice:
        which = ", ".join(f"{n!r} (columns {', '.join(map(str, js))})" for n, js in twice.items())
        s = "s" if len(twice) > 1 else ""
        raise DataError(
            f"{path}: duplicate column{s} {which} in the header; expected each column named once"
        )


def _scan_csv(
    path: Path, types: dict[str, pl.DataType] | None = None, text: Collection[str] = ()
) -> pl.LazyFrame:
    """The CSV file with the columns `text` read as text, the others as `types` says or as
    their first INFER_ROWS rows suggest (a column of `text` not in the file is ignored)."""
    overrides: dict[str, pl.DataType] = {c: pl.String() for c in text}
    sep, decimal_comma = _dialect(path)
    return pl.scan_csv(
        path,
        separator=sep,
        decimal_comma=decimal_comma,
        infer_schema_length=INFER_ROWS,
        null_values=MISSING_MARKERS,
        schema_overrides={**(types or {}), **overrides} or None,
    )


def not_numbers(lf: pl.LazyFrame, col: str, n: int = 3) -> list[str]:
    """Up to `n` distinct values of text column `col` that are no number as they stand (' 1.5'
    with its space is none), in file order (none where the file cannot be read)."""
    x = pl.col(col)
    bad = x.is_not_null() & x.cast(pl.Float64, strict=False).is_null()
    try:
        got = lf.select(x).filter(bad).unique(maintain_order=True).head(n).collect()
    except (pl.exceptions.PolarsError, OSError):
        return []
    return [str(v) for v in got[col].to_list()]


def settle_types(
    lf: pl.LazyFrame, path: Path, text: Collection[str] = ()
) -> tuple[pl.LazyFrame, frozenset[str]]:
    """The file with each column's type taken from all its rows, and its columns with no value.

    A CSV file's types are guessed from its first INFER_ROWS rows: a column still empty there
    (a 60-date factor on the first 60 dates of a date-sorted file) reads as text, and one of
    whole numbers there as integers, though later rows hold decimals. One pass over those
    columns, read as text, finds the type every value fits: integers, numbers, booleans
    (true / false), else text; the file is read with those types.

    The columns with no value at all are of type Null (a Parquet column written with nulls
    only) or, in a CSV file, every field empty or a missing marker. They are numeric columns
    with no value, not text columns (read as Float64).

    The columns `text` of a CSV file stay text (`lf` must have been scanned with them).
    """
    schema = lf.collect_schema()
    empty = {n for n, t in schema.items() if t == pl.Null}
    unsure = [n for n, t in schema.items() if (t == pl.String or t.is_integer()) and n not in text]
    if not unsure or SUFFIXES.get(path.suffix.lower()) != "csv":
        return lf, frozenset(empty)
    as_text = _scan_csv(path, {n: pl.String() for n in unsure}, text)
    counts = collect(as_text.select(_bad_counts(unsure)), path, unsure).row(0)
    rows, types = counts[0], {}
    for j, name in enumerate(unsure):
        nulls, bad_int, bad_num, bad_bool = counts[1 + 4 * j : 5 + 4 * j]
        if nulls == rows:
            empty.add(name)
            fits: pl.DataType = pl.Float64()
        elif bad_int == nulls:
            fits = pl.Int64()
        elif bad_num == nulls:
            fits = pl.Float64()
        elif bad_bool == 0:
            fits = pl.Boolean()
        else:
            fits = pl.String()
        if fits != schema[name]:
            types[name] = fits
    return (_scan_csv(path, types, text) if types else lf), frozenset(empty)


def _bad_counts(columns: list[str]) -> list[pl.Expr]:
    """The row count, then per text column: its nulls, its values (or nulls) that are not
    integers, not numbers, and its non-null values that are not booleans."""
    out = [pl.len().alias("rows")]
    for j, c in enumerate(columns):
        x = pl.col(c)
        out += [
            x.null_count().alias(f"{j}n"),
            x.cast(pl.Int64, strict=False).null_count().alias(f"{j}i"),
            x.cast(pl.Float64, strict=False).null_count().alias(f"{j}f"),
            (~x.str.to_lowercase().is_in(["true", "false"])).sum().alias(f"{j}b"),
        ]
    return out


def collect(lf: pl.LazyFrame, path: Path, columns: list[str]) -> pl.DataFrame:
    """Collect a projection of the file, turning a polars failure into a DataError."""
    try:
        return lf.collect()
    except Exception as e:  # e.g. a CSV value that does not fit the inferred type
        raise DataError(f"{path}: cannot read column(s) {columns}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


@dataclass(frozen=True)
class Index:
    """Row -> (date index, security index) of the long frame, and the axes."""

    di: np.ndarray  # (N,) int64
    si: np.ndarray  # (N,) int64
    dates: np.ndarray  # (D,) datetime64[D], datetime64[us] or int64
    ids: np.ndarray  # (S,) str


def read_index(lf: pl.LazyFrame, cols: Columns, path: Path) -> Index:
    """Read the time and id columns, parse dates, and check (date, id) pairs are unique."""
    keys = [cols.time] + ([cols.id] if cols.id else [])
    frame = collect(lf.select(keys), path, keys)
    raw = frame.get_column(cols.time)  # as written: zoned, or text with its offsets
    t = parse_time(raw, cols.time_key, path)
    dates_s = t.unique().sort()
    di = (t.rank("dense") - 1).cast(pl.Int64).to_numpy()
    del t
    if cols.id:
        sid = frame.get_column(cols.id)
        if sid.null_count():
            raise DataError(
                f"{path}: column {cols.id!r} ([data] id) has {plural(sid.null_count(), 'empty value')}"
            )
        sid = sid.cast(pl.String)
        ids = sid.unique().sort().to_numpy().astype(str)
        si = (sid.rank("dense") - 1).cast(pl.Int64).to_numpy()
        del sid
    else:
        ids = np.array(["series"])
        si = np.zeros(len(di), dtype=np.int64)
    del frame
    D, S = len(dates_s), len(ids)
    counts = np.bincount(di * S + si, minlength=D * S)  # (D * S,)
    if counts.max() > 1:
        _refuse_repeated_wall_time(raw, di * S + si, S, dates_s, cols.time_key, path)
        flat = int(np.argmax(counts > 1))
        n_dup = int((counts > 1).sum())
        raise duplicate_rows(path, cols.time, cols.id, n_dup, dates_s[flat // S], ids[flat % S])
    del raw
    return Index(di, si, dates_s.to_numpy(), ids)


def _refuse_repeated_wall_time(
    raw: pl.Series, cell: np.ndarray, S: int, dates: pl.Series, key: str, path: Path
) -> None:
    """Where rows fall on one (date, id) cell only once their zone or UTC offset is dropped
    (their times as written differ: the hour the clocks go back, read twice as local wall
    time), refuse with that cause, not as duplicate rows. `cell`: each row's date x S + id."""
    zone = raw.dtype.time_zone if isinstance(raw.dtype, pl.Datetime) else None
    if zone is None and raw.dtype != pl.String:
        return

    def cells(frame: pl.DataFrame) -> pl.DataFrame:  # the cells of rows written apart
        return (
            frame.group_by("cell")
            .agg(pl.len().alias("rows"), pl.col("raw").n_unique().alias("written"))
            .filter((pl.col("rows") > 1) & (pl.col("written") > 1))
            .sort("cell")
        )

    frame = pl.DataFrame({"cell": cell, "raw": raw})
    per = cells(frame)
    if per.height and zone is None:  # text: the instants, so 10:00Z and 10:00+00:00 are one
        rows = frame.filter(pl.col("cell").is_in(per["cell"].implode()))
        instants = [_instant(v) for v in rows["raw"]]
        per = cells(rows.with_columns(raw=pl.Series(instants, dtype=pl.String)))
    if not per.height:
        return
    n = per.height
    example = dates[int(per["cell"][0]) // S]
    how = "with UTC offsets" if zone is None else f"in zone {zone}"
    raise DataError(
        f"{path}: column {raw.name!r} ([data] {key}) holds times {how}, read as local wall "
        f"times, and {plural(n, 'wall time')} repeat{'s' if n == 1 else ''} where the clocks "
        f"go back (e.g. {example}: two instants); store the times in UTC (in polars: "
        ".dt.convert_time_zone('UTC')) or without the repeated hour"
    )


def _instant(text: str) -> str:
    """A time written with a UTC offset as its UTC instant (as text; itself where it is no
    time polars reads)."""
    try:
        v = pl.Series([text]).str.to_datetime(time_zone="UTC", strict=False)[0]
    except pl.exceptions.PolarsError:
        v = None
    return text if v is None else str(v)


def duplicate_rows(
    path: Path, time: str, ident: str | None, n_dup: int, date: Any, id_value: str
) -> DataError:
    """The error of a file with `n_dup` (date, id) pairs (dates, for one series) on more
    than one row, the first of them `date`, `id_value`."""
    what = f"({time}, {ident})" if ident else f"{time}"
    return DataError(
        f"{path}: {n_dup:,} duplicate {what} row{'' if n_dup == 1 else 's'}, "
        f"e.g. {date} {id_value if ident else ''}".rstrip()
        + "; expected one row per date"
        + (" and id" if ident else " (set [data] id for a panel)")
    )


def refuse_duplicates(frame: pl.DataFrame, time: str, ident: str | None, path: Path) -> None:
    """`read_index`'s check on a frame whose `time` column is parsed: a DataError naming the
    file when a (date, id) pair (a date, for one series) is on more than one row."""
    if ident and ident not in frame.columns:
        return  # no id column: the caller names it as missing
    keys = [time] + ([ident] if ident else [])
    pairs = frame.select(pl.col(time), *([pl.col(ident).cast(pl.String)] if ident else []))
    pairs = pairs.drop_nulls()  # an empty id is named as such by the caller, not a duplicate
    twice = pairs.filter(pairs.is_duplicated()).unique().sort(keys)
    if twice.height:
        first = twice.row(0, named=True)
        id_value = str(first[ident]) if ident else ""
        raise duplicate_rows(path, time, ident, twice.height, first[time], id_value)


def _parse_or_null(t: pl.Series, parse: Any) -> pl.Series:
    """`parse(strict=False)` of the strings `t`, all null where polars finds no format for
    them (it raises then, e.g. on 2015/01-05)."""
    try:
        return parse(strict=False)
    except pl.exceptions.ComputeError:
        return pl.Series(t.name, [None] * len(t), dtype=pl.Date)


_DAY_MONTH = r"^\s*\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}(\D|$)"


def _refuse_day_month(t: pl.Series, key: str, path: Path) -> None:
    """Refuse dates written day or month first (01/07/2019): polars would guess one order
    from the first value, and read a file of the other order wrongly where no day passes 12
    (the dates, the split and the purge all scrambled) without a word. Where the values
    show the order (29/07/2020: 29 is no month; a four-digit year last, one separator and
    one year width throughout), the message gives the format that reads them; where they
    show both orders, it says the file mixes them."""
    hit = t.filter(t.str.contains(_DAY_MONTH))
    if not len(hit):
        return
    parts = hit.str.extract_groups(r"^\s*(\d{1,2})([/.\-])(\d{1,2})[/.\-](\d{2,4})")
    first, second = (parts.struct.field(f).cast(pl.Int64) for f in ("1", "3"))
    seps, years = parts.struct.field("2"), parts.struct.field("4").str.len_chars()
    sep = seps[0]
    day_first, month_first = bool((first > 12).any()), bool((second > 12).any())
    uniform = seps.n_unique() == 1 and years.n_unique() == 1 and years[0] == 4
    head = f"{path}: column {t.name!r} ([data] {key}) has dates"
    iso = "write them as ISO dates (2019-07-01)"
    if uniform and day_first and month_first:
        a, b = hit.filter(first > 12)[0], hit.filter(second > 12)[0]
        raise DataError(f"{head} written day first ({a!r}) and month first ({b!r}); {iso}")
    if uniform and day_first != month_first:
        order, fmt = ("day", "%d{0}%m{0}%Y") if day_first else ("month", "%m{0}%d{0}%Y")
        example = hit.filter((first if day_first else second) > 12)[0]
        raise DataError(
            f"{head} written {order} first, e.g. {example!r}; {iso}, e.g. with polars: "
            f"pl.col(name).str.to_date('{fmt.format(sep)}')"
        )
    raise DataError(
        f"{head} like {hit[0]!r}, which read as day/month or as month/day; {iso}, e.g. with "
        "polars: pl.col(name).str.to_date('%d/%m/%Y') or '%m/%d/%Y', whichever they are"
    )


def _yyyymmdd(t: pl.Series, key: str, path: Path) -> pl.Series | None:
    """Dates written as eight digits, 20240105 (integers from 10000101 to 99991231, or text
    of eight digits, as many vendors of Chinese market data write them), as dates; None for
    other values. Eight digits that are no date are refused, naming them: read as numbers
    they would make a file read one way and a part of it (`since`) another."""
    if len(t) == 0 or not (t.dtype.is_integer() or t.dtype == pl.String):
        return None
    if t.dtype.is_integer():
        low, high = t.min(), t.max()
        if not (isinstance(low, int) and isinstance(high, int)):
            return None
        if not 10_000_101 <= low <= high <= 99_991_231:
            return None
    text = t.cast(pl.String)
    lengths = text.str.len_bytes()
    if lengths.min() != 8 or lengths.max() != 8 or not text.str.contains(r"^\d{8}$").all():
        return None
    parsed = text.str.to_date("%Y%m%d", strict=False)
    if parsed.null_count():
        bad = t.filter(parsed.is_null()).unique(maintain_order=True).head(3).to_list()
        raise DataError(
            f"{path}: column {t.name!r} ([data] {key}) holds dates written as eight digits "
            f"(YYYYMMDD, e.g. {t[0]!r}), but {plural(parsed.null_count(), 'value')} "
            f"{'is' if parsed.null_count() == 1 else 'are'} no date, e.g. {bad}"
        )
    return parsed


def parse_time(t: pl.Series, key: str, path: Path) -> pl.Series:
    """The time column `t` ([data] `key`) as dates, datetimes or integers: ISO strings parsed,
    a date column of eight-digit values (20240105) read as dates; empty or unparseable values
    and other types refused."""
    col = t.name
    if t.null_count():
        raise DataError(
            f"{path}: column {col!r} ([data] {key}) has {plural(t.null_count(), 'empty value')}"
        )
    if key == "date" and (compact := _yyyymmdd(t, key, path)) is not None:
        return compact
    if isinstance(t.dtype, pl.Datetime) and t.dtype.time_zone is not None:
        # the local wall time, zone dropped: a session stored as midnight Asia/Shanghai stays
        # its own date, not the UTC evening before (polars holds zoned times as UTC)
        return t.dt.replace_time_zone(None)
    if t.dtype == pl.String:
        _refuse_day_month(t, key, path)
        if t.str.contains(":", literal=True).any():  # times: the time as written, offset dropped
            t = t.str.replace(_OFFSET, "${1}")
        parsed = _parse_or_null(t, t.str.to_date)
        if parsed.null_count():
            parsed_dt = _parse_or_null(t, t.str.to_datetime)
            if parsed_dt.null_count() < parsed.null_count():
                parsed = parsed_dt
        if parsed.null_count():
            bad = t.filter(parsed.is_null()).unique(maintain_order=True).head(3).to_list()
            raise DataError(
                f"{path}: column {col!r} ([data] {key}) has "
                f"{plural(parsed.null_count(), 'unparseable date')}, e.g. {bad}; "
                "expected ISO dates like 2024-01-31"
            )
        t = parsed
    elif not (t.dtype.is_temporal() or t.dtype.is_integer()):
        raise DataError(
            f"{path}: column {col!r} ([data] {key}) has type {t.dtype}, "
            "expected dates, datetimes or integers"
        )
    return t


def since(lf: pl.LazyFrame, cols: Columns, path: Path, first: Any) -> pl.LazyFrame:
    """The rows of time >= `first` (a value of the parsed time axis): a Parquet file's other
    row groups are not read."""
    dtype = lf.collect_schema()[cols.time]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:  # `first` is wall time
        at = (
            pl.lit(first)
            .cast(pl.Datetime(dtype.time_unit))
            .dt.replace_time_zone(dtype.time_zone, ambiguous="earliest")
        )
        return lf.filter(pl.col(cols.time) >= at)
    if dtype.is_temporal() or (dtype.is_integer() and isinstance(first, (int, np.integer))):
        return lf.filter(pl.col(cols.time) >= first)
    raw = collect(lf.select(cols.time), path, [cols.time]).get_column(cols.time)
    kept = raw.filter(parse_time(raw, cols.time_key, path) >= first).unique()
    return lf.filter(pl.col(cols.time).is_in(kept.implode()))


def read_dense(
    lf: pl.LazyFrame,
    columns: list[str],
    index: Index,
    path: Path,
    out: np.ndarray | None = None,
    dtype: type = np.float32,
    empty: list[str] | None = None,
    infinite: dict[str, int] | None = None,
) -> np.ndarray:
    """Scatter `columns` into a dense (D, S, len(columns)) array, NaN where a row is absent.

    Reads CHUNK_COLUMNS columns at a time, so only a slice of the long frame is held beside
    the dense array. Infinite values are errors, not missing values: each column holding some
    is counted in `infinite` when given (the caller refuses them all at once), else refused.
    The columns with no value (every row empty or NaN) are appended to `empty` when given.
    """
    D, S = len(index.dates), len(index.ids)
    if out is None:
        out = np.full((D, S, len(columns)), np.nan, dtype=dtype)
    cast = pl.Float64 if dtype == np.float64 else pl.Float32
    for j0 in range(0, len(columns), CHUNK_COLUMNS):
        chunk = columns[j0 : j0 + CHUNK_COLUMNS]
        frame = collect(lf.select(pl.col(c).cast(cast) for c in chunk), path, chunk)
        for j, c in enumerate(chunk):
            x = frame.get_column(c).to_numpy()  # (N,) NaN where empty
            n_inf = int(np.isinf(x).sum())
            if n_inf and infinite is not None:
                infinite[c] = n_inf
            elif n_inf:
                refuse_infinite(path, {c: n_inf})
            if empty is not None and np.isnan(x).all():
                empty.append(c)
            out[index.di, index.si, j0 + j] = x
        del frame
    return out


def refuse_infinite(path: Path, counts: dict[str, int]) -> None:
    """A DataError naming every column with infinite values and how many rows hold them."""
    if not counts:
        return
    rows = ", ".join(f"{c!r} ({n} row{'s' if n > 1 else ''})" for c, n in counts.items())
    s = "s" if len(counts) > 1 else ""
    raise DataError(
        f"{path}: infinite values (or values beyond float32 range) in {len(counts)} "
        f"column{s}: {rows}; expected finite numbers, or empty for missing"
    )
