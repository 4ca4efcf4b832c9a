"""Chronological splits: purge and embargo index sets on a tiny calendar, no label leakage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data import DataConfig, DataError, Prepared, make_split
from tests.data_tests.panels import DAY0, load, long_file

DATES = DAY0 + np.arange(20)  # 2020-01-01 .. 2020-01-20, datetime64[D]


def split(dates=DATES, **kw):
    return make_split(dates, DataConfig(path="x.parquet", **kw))


def test_purge_of_horizon_before_each_later_segment():
    # 20 dates, val 25% and test 25%: validation starts at 10, test at 15
    s = split(val_frac=0.25, test_frac=0.25, horizon=1)
    assert (s.train, s.val, s.test) == (range(0, 9), range(10, 14), range(15, 20))
    s = split(val_frac=0.25, test_frac=0.25, horizon=3)
    assert (s.train, s.val, s.test) == (range(0, 7), range(10, 12), range(15, 20))


def test_embargo_adds_dates_to_the_purge():
    s = split(val_frac=0.25, test_frac=0.25, horizon=2, embargo=1)
    assert (s.train, s.val, s.test) == (range(0, 7), range(10, 12), range(15, 20))
    s = split(val_frac=0.25, test_frac=0.25, horizon=1, embargo=2)
    assert (s.train, s.val, s.test) == (range(0, 7), range(10, 12), range(15, 20))


def test_no_test_segment_leaves_validation_to_the_end():
    s = split(val_frac=0.25, test_frac=0.0, horizon=2)
    assert (s.train, s.val, s.test) == (range(0, 13), range(15, 20), range(20, 20))


def test_split_by_dates():
    s = split(val_start="2020-01-11", test_start="2020-01-16", horizon=2)
    assert (s.train, s.val, s.test) == (range(0, 8), range(10, 13), range(15, 20))
    # a date that is not a trading day starts the segment at the next one
    gappy = np.delete(DATES, [10, 11])  # 2020-01-11 and -12 are not in the calendar
    s = split(gappy, val_start="2020-01-11", test_start="2020-01-16", horizon=1)
    assert (s.train, s.val, s.test) == (range(0, 9), range(10, 12), range(13, 18))
    # an integer time axis (a single series ordered by ts_id) takes integers
    s = split(np.arange(100, 120), val_start=110, test_start="115", horizon=1)
    assert (s.train, s.val, s.test) == (range(0, 9), range(10, 14), range(15, 20))


def test_every_label_stays_inside_its_segment():
    for horizon, embargo in [(1, 0), (3, 0), (2, 2), (4, 1)]:
        s = split(val_frac=0.3, test_frac=0.2, horizon=horizon, embargo=embargo)
        # a label at end date d is known at d + horizon; it must come before the next start
        assert max(s.train) + horizon < s.val.start - embargo
        assert max(s.val) + horizon < s.test.start - embargo
        assert max(s.test) < 20


def test_bad_splits_name_the_key():
    with pytest.raises(DataError, match=r"x\.parquet: \[data\] val_frac / val_start: the valid"):
        split(val_start="2020-01-11", test_start="2020-01-11")
    with pytest.raises(DataError, match=r"no training dates"):
        split(val_start="2020-01-02")
    with pytest.raises(DataError, match=r"\[data\] val_start: cannot read 'soon'"):
        split(val_start="soon")
    with pytest.raises(DataError, match=r"after the test start"):
        split(val_start="2020-01-15", test_start="2020-01-12")


def test_a_start_outside_the_dates_is_named_with_the_file_s_dates():
    span = "the file's dates are 2020-01-01 .. 2020-01-20"
    # eight digits on a date axis are that date, as a date column of them reads
    assert split(val_start=20200115) == split(val_start="2020-01-15")
    # and so is their text ("20200115" used to read as the year 20,200,115: past every
    # date, so a test_start so written left no test segment, without a word)
    assert split(val_start="20200111", test_start="20200116") == split(
        val_start="2020-01-11", test_start="2020-01-16"
    )
    with pytest.raises(DataError) as err:
        split(val_start=20201315)  # no month 13: a number, which would read as a year
    assert str(err.value) == (
        "x.parquet: [data] val_start = 20201315: not a date as YYYYMMDD (it would read as "
        "the year 20201315); expected a date like '2020-01-01'"
    )
    with pytest.raises(DataError, match=r"test_start = '20201315': not a date as YYYYMMDD"):
        split(test_start="20201315")
    with pytest.raises(DataError, match=r"val_start = 2020: a number on a date axis"):
        split(val_start=2020)
    with pytest.raises(DataError) as err:
        split(val_start="2030-01-01")
    assert str(err.value) == (
        f"x.parquet: [data] val_start = '2030-01-01' is after the last date: {span}"
    )
    # a test_start past the end leaves no test segment, as it always did (a study made so
    # is still resumed)
    s = split(val_start="2020-01-15", test_start="2030-01-01")
    assert (s.val, s.test) == (range(14, 20), range(20, 20))
    # an integer axis (an order column) is shown as it is, not cut as a date would be
    ms = np.array([1577836800000, 1577923200000, 1578009600000], dtype=np.int64)
    with pytest.raises(DataError) as err:
        make_split(ms, DataConfig(path="x.parquet", val_start=1600000000000))
    assert "the file's dates are 1577836800000 .. 1578009600000" in str(err.value)
    # a file too short for its fractions: an error, not an IndexError
    with pytest.raises(DataError):
        split(DATES[:3], val_frac=0.1, test_frac=0.0, test_start="2020-01-02")
    with pytest.raises(DataError) as err:
        split(val_start="2019-06-01")
    assert str(err.value) == (
        f"x.parquet: [data] val_start = '2019-06-01' leaves no training date before it: {span}"
    )
    with pytest.raises(DataError) as err:
        split(val_start="2020-01-15", test_start="2020-01-12")
    assert str(err.value) == (
        "x.parquet: [data] val_start = '2020-01-15' starts validation on 2020-01-15, after the "
        "test start (test_start = '2020-01-12': 2020-01-12); expected validation before test"
    )
    with pytest.raises(DataError, match=r"val_frac starts validation on 2020-01-15, after the"):
        split(test_start="2020-01-05")


def test_a_purge_as_long_as_the_file_names_the_horizon():
    with pytest.raises(DataError) as err:
        split(horizon=20)
    assert str(err.value) == (
        "x.parquet: [data] horizon (--horizon) = 20: the purge before validation and before "
        "test is not shorter than the file's 20 dates; expected a horizon well below 20"
    )
    with pytest.raises(DataError, match=r"horizon \(--horizon\) = 15 \+ embargo = 25: "):
        split(horizon=15, embargo=10)


def test_a_file_of_one_date_is_said_to_be_too_short_not_its_horizon_too_long():
    # horizon 1 is the least there is: "a horizon well below 1" asked for the impossible
    with pytest.raises(DataError) as err:
        split(DATES[:1])
    assert str(err.value) == (
        "x.parquet: the file has 1 date: too few to split into training, validation and test "
        "dates with a purge before each later segment, whatever [data] horizon is (here 1; "
        "even 1 leaves none); expected a file of many dates"
    )


def test_a_file_of_one_date_is_too_short_whatever_its_horizon_or_embargo():
    # no horizon fits one date: "expected a horizon well below 1" asked for the impossible
    for kw in ({"horizon": 3}, {"horizon": 1, "embargo": 2}):
        with pytest.raises(DataError) as err:
            split(DATES[:1], **kw)
        assert str(err.value).startswith("x.parquet: the file has 1 date: too few to split")


def test_a_file_of_one_date_with_a_derived_target_is_said_to_be_too_short(tmp_path):
    # the forward return from the close: refused before the split, by the same words
    path = long_file(tmp_path / "one.parquet", 1, 3, {"close": lambda d, s: 10.0 + s})
    for horizon in (1, 3):
        with pytest.raises(DataError) as err:
            load(path, target=None, horizon=horizon)
        assert str(err.value) == (
            f"{path}: the file has 1 date: too few to split into training, validation and "
            "test dates with a purge before each later segment, whatever [data] horizon is "
            f"(here {horizon}; even 1 leaves none); expected a file of many dates"
        )


def bars(path, close, drop=frozenset()):
    """A file of close prices close[d, s] and a constant feature."""
    D, S = close.shape
    cols = {"close": lambda d, s: float(close[d, s]), "x": lambda d, s: 1.0}
    return long_file(path, D, S, cols, drop=drop)


def test_no_training_label_comes_from_a_validation_or_test_date(tmp_path):
    # 30 dates: validation from 15, test from 24; horizon 3 -> train ends < 12, val ends < 21
    rng = np.random.default_rng(0)
    close = np.exp(np.cumsum(rng.normal(0, 0.02, (30, 4)), axis=0))
    kw = dict(
        target=None,
        horizon=3,
        val_frac=0.3,
        test_frac=0.2,
        target_cs="zscore",
        ohlcv_features=True,
        max_missing=1.0,
    )
    base, cfg = load(bars(tmp_path / "a.parquet", close), **kw)
    s = make_split(base.dates, cfg)
    assert (s.train, s.val, s.test) == (range(0, 12), range(15, 21), range(24, 30))

    later = close.copy()
    later[15:] *= rng.uniform(0.5, 2.0, later[15:].shape)  # rewrite validation and test
    changed, _ = load(bars(tmp_path / "b.parquet", later, drop={(16, 0), (20, 3)}), **kw)
    tr = slice(s.train.start, s.train.stop)
    np.testing.assert_array_equal(changed.target[tr], base.target[tr])
    np.testing.assert_array_equal(changed.labelled[tr], base.labelled[tr])
    np.testing.assert_array_equal(changed.values[tr], base.values[tr])
    assert not np.allclose(changed.target[12:15], base.target[12:15], equal_nan=True)

    later = close.copy()
    later[24:] *= 3.0  # rewrite test only: no validation label moves
    changed, _ = load(bars(tmp_path / "c.parquet", later), **kw)
    va = slice(0, s.val.stop)
    np.testing.assert_array_equal(changed.target[va], base.target[va])


def test_stride_thins_training_windows_only(tmp_path):
    path = long_file(
        tmp_path / "p.parquet", 20, 2, {"f0": lambda d, s: d, "target": lambda d, s: 1.0}
    )
    panel, cfg = load(path, val_frac=0.25, test_frac=0.25, stride=3)
    data = Prepared(panel, cfg, torch.device("cpu"))
    assert data.split.train == range(0, 9)
    train_dates = sorted({int(e) // 2 for e in data.ends("train", 2)})
    assert train_dates == [3, 6]  # d = 1..8 have windows of 2; stride 3 from the start keeps 3, 6
    val_dates = sorted({int(e) // 2 for e in data.ends("val", 2)})
    assert val_dates == [10, 11, 12, 13]
    assert sorted({int(e) // 2 for e in data.ends("test", 2)}) == [15, 16, 17, 18, 19]


def test_walk_forward_folds_by_hand() -> None:
    from data.split import make_folds

    dates = np.arange(100)
    for mode, starts in (("expanding", (0, 0, 0)), ("sliding", (0, 14, 28))):
        cfg = DataConfig(path="x.parquet", folds=3, fold_mode=mode)
        split = make_split(dates, cfg)
        assert (split.val, split.test) == (range(70, 84), range(85, 100))
        folds = make_folds(split, cfg, 100)
        # validation blocks of the validation segment's length, the last one the segment
        assert [f.val for f in folds] == [range(42, 56), range(56, 70), range(70, 84)]
        # each trains on the dates before its block, less the horizon purge
        assert [f.train for f in folds] == [
            range(starts[0], 41),
            range(starts[1], 55),
            range(starts[2], 69),
        ]
        assert all(f.test == split.test for f in folds)
    too_many = DataConfig(path="x.parquet", folds=6)
    with pytest.raises(DataError, match=r"folds = 6: .* leave no training dates"):
        make_folds(make_split(dates, too_many), too_many, 100)
