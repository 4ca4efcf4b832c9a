"""A CSV file's column types come from the whole file, not from its first rows: a factor still
empty on the first dates of a date-sorted file stays numeric, as it is sorted by symbol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data import DataError
from data.load import INFER_ROWS
from tests.data_tests.panels import load

N_IDS = 50
N_DATES = INFER_ROWS // N_IDS + 20  # the last 20 dates lie beyond the rows types are read from


def factor_file(path: Path, by_symbol: bool = False) -> Path:
    """Dates x N_IDS rows sorted by date: `late` empty until the last 10 dates (a long-window
    factor), `ints` whole numbers until its last date's 2.5, `flag` empty then true/false."""
    d = np.repeat(np.arange(N_DATES), N_IDS)
    s = np.tile(np.arange(N_IDS), N_DATES)
    late = N_DATES - 10
    df = pl.DataFrame(
        {
            "date": np.datetime64("2000-01-01") + d,
            "id": [f"S{k:02d}" for k in s],
            "f_plain": d * 0.5 + s,
            "f_late": np.where(d >= late, d * 1.0 + s, np.nan),
            "f_late2": np.where(d >= late, -1.0 * d, np.nan),
            "f_ints": np.where(d == N_DATES - 1, 2.5, d % 7).astype(float),
            "flag": [None if a < late else bool(b % 2) for a, b in zip(d, s, strict=True)],
            "target": s * 0.01,
        }
    )
    df = df.with_columns(pl.col("f_ints").cast(pl.String).str.replace(r"\.0$", ""))
    df = df.with_columns(pl.col("f_late", "f_late2").fill_nan(None))
    if by_symbol:
        df = df.sort("id", "date")
    df.write_csv(path)
    return path


def test_a_csv_column_empty_on_its_first_rows_stays_numeric(tmp_path: Path) -> None:
    path = factor_file(tmp_path / "by_date.csv")
    guess = pl.scan_csv(path, infer_schema_length=INFER_ROWS).collect_schema()
    assert guess["f_late"] == pl.String and guess["f_ints"] == pl.Int64
    split = {"val_frac": 0.02, "test_frac": 0.01}  # f_late has values on training dates
    panel, _ = load(path, features=("f_*",), tradable="flag", **split)
    assert panel.feature_names == ["f_plain", "f_late", "f_late2", "f_ints"]
    assert np.isnan(panel.values[: N_DATES - 10, :, 1]).all()
    assert panel.values[-1, 3, 1] == N_DATES - 1 + 3
    assert panel.values[-1, 0, 3] == 2.5 and panel.values[-2, 0, 3] == (N_DATES - 2) % 7
    assert not panel.valid[: N_DATES - 10].any()  # tradable empty: not tradable
    assert panel.valid[-10:, 1::2].all() and not panel.valid[-10:, ::2].any()
    other = factor_file(tmp_path / "by_symbol.csv", by_symbol=True)
    again, _ = load(other, features=("f_*",), tradable="flag", **split)
    np.testing.assert_array_equal(again.values, panel.values)


def test_every_text_feature_column_is_named_at_once(tmp_path: Path) -> None:
    path = factor_file(tmp_path / "p.csv")
    df = pl.read_csv(path, infer_schema=False)  # every column as text, as written
    bad = df.with_columns(
        pl.when(pl.col("date") == pl.col("date").max()).then(pl.lit("n.a.")).otherwise(c).alias(c)
        for c in ("f_late", "f_ints")
    )
    bad.write_csv(path)
    with pytest.raises(DataError) as e:
        load(path, features=("f_*",))
    msg = str(e.value)
    assert (
        "feature columns 'f_late' (String, values such as ['n.a.']), "
        "'f_ints' (String, values such as ['n.a.']) ([data] features)"
    ) in msg
    assert "expected numeric types" in msg and msg.count("\n") == 0
    # a spreadsheet's error markers are missing values, as NA is
    marked = df.with_columns(
        pl.when(pl.col("date") == pl.col("date").max()).then(pl.lit(m)).otherwise(c).alias(c)
        for c, m in (("f_late", "#N/A"), ("f_ints", "#DIV/0!"))
    )
    marked.write_csv(path)
    panel, _ = load(path, features=("f_*",))
    assert np.isnan(panel.values[-1, :, 1:4:2]).all()  # f_late and f_ints on the last date
    one = df.with_columns(
        pl.when(pl.col("id") == "S03")
        .then(pl.lit("1,5"))
        .otherwise(pl.col("f_plain"))
        .alias("f_plain")
    )
    one.write_csv(path)
    with pytest.raises(
        DataError,
        match=r"'f_plain' \(\[data\] features\) has type String, values such as \['1,5'\], expected",
    ):
        load(path, features=("f_*",))
    spaced = df.with_columns(  # a number with a space around it is text: shown as it is
        pl.when(pl.col("id") == "S03")
        .then(pl.lit(" 1.5"))
        .otherwise(pl.col("f_plain"))
        .alias("f_plain")
    )
    spaced.write_csv(path)
    with pytest.raises(DataError, match=r"values such as \[' 1.5'\]"):
        load(path, features=("f_*",))


def _with_header(path: Path, header: str, sep: str = ",") -> Path:
    """A 3-date x 2-id file under `header`: date, id, then one number per other column."""
    names = header.split(sep)
    rows = [
        sep.join([f"2020-01-0{d + 1}", f"S{s}"] + [str(d + s + j) for j in range(len(names) - 2)])
        for d in range(3)
        for s in range(2)
    ]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_a_column_named_twice_in_the_header_is_refused(tmp_path):
    # polars would read the second 'f0' as a new column 'f0_duplicated_0'
    path = _with_header(tmp_path / "p.csv", "date,id,f0,target,f0")
    with pytest.raises(DataError) as e:
        load(path)
    msg = str(e.value)
    assert msg == (
        f"{path}: duplicate column 'f0' (columns 3, 5) in the header; "
        "expected each column named once"
    )
    # a tab-separated file is split on tabs; every duplicated name is named at once
    path = _with_header(tmp_path / "p.tsv", "date\tid\tf0\tf0\ttarget\ttarget\ttarget", "\t")
    with pytest.raises(DataError, match=r"columns 'f0' \(columns 3, 4\), 'target' \(columns 5"):
        load(path)
    # names that only share a prefix are not duplicates
    panel, _ = load(_with_header(tmp_path / "ok.csv", "date,id,f0,f0_2,target"))
    assert panel.feature_names == ["f0", "f0_2"]


def test_ids_of_a_csv_file_are_read_as_text(tmp_path):
    # A-share codes: 000001 is not the number 1; dates and numbers are read as before
    df = pl.DataFrame(
        {
            "date": [f"2020-01-0{d + 1}" for d in range(4) for _ in range(3)],
            "code": [f"{s:06d}" for _ in range(4) for s in (0, 1, 600519)],
            "f0": [float(d * 100 + s) for d in range(4) for s in range(3)],
            "target": [0.1 * d for d in range(4) for _ in range(3)],
        }
    )
    df.write_csv(tmp_path / "p.csv")
    panel, _ = load(tmp_path / "p.csv", id="code")
    assert list(panel.ids) == ["000000", "000001", "600519"]
    assert panel.dates[0] == np.datetime64("2020-01-01") and panel.values[3, 2, 0] == 302.0
    # a Parquet file's integer ids read as their digits
    df.with_columns(pl.col("code").cast(pl.Int64)).write_parquet(tmp_path / "p.parquet")
    panel, _ = load(tmp_path / "p.parquet", id="code")
    assert sorted(panel.ids) == ["0", "1", "600519"] and panel.values[3, :, 0].sum() == 903.0


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_csv_separated_by_semicolons_or_tabs_reads_as_the_comma_one(tmp_path, sep):
    """A spreadsheet's CSV where the comma is the decimal mark is separated by ';' (and some
    tools write tabs under .csv): the header shows it, and the file reads as the comma one."""
    rows = ["date,id,f0,target", "2024-01-02,A B,1.5,0.1", "2024-01-02,C,2.5,0.2"]
    rows += ["2024-01-03,A B,3.5,0.3", "2024-01-03,C,4.5,0.4"]
    comma, other = tmp_path / "comma.csv", tmp_path / "other.csv"
    comma.write_text("\n".join(rows) + "\n")
    other.write_text("\n".join(r.replace(",", sep) for r in rows) + "\n")
    a, _ = load(comma, target="target", features=["f0"])
    b, _ = load(other, target="target", features=["f0"])
    assert list(b.ids) == ["A B", "C"] and list(b.ids) == list(a.ids)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.target, b.target)
    if sep == ";":  # the comma as the decimal mark, and a quoted name holding a comma
        euro = tmp_path / "euro.csv"
        lines = [r.replace(",", ";") for r in rows]
        lines = [lines[0].replace("f0", '"f0, raw"')] + [x.replace(".", ",") for x in lines[1:]]
        euro.write_text("\n".join(lines) + "\n")
        c, _ = load(euro, target="target", features=["f0, raw"])
        assert np.array_equal(a.values, c.values) and np.array_equal(a.target, c.target)


def test_a_text_target_shows_its_values_that_are_no_number(tmp_path):
    path = tmp_path / "t.csv"
    rows = ["date,id,f0,target", "2024-01-02,A,1.5,abc", "2024-01-02,C,2.5,0.2"]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as err:
        load(path, target="target", features=["f0"])
    assert str(err.value) == (
        f"{path}: column 'target' ([data] target) has type String, values such as ['abc'], "
        "expected numeric"
    )
