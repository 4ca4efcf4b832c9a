"""Loading: masks, missing values, single series, feature selection, derived targets."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from data import DataConfig, DataError, load_panel
from data.panel import size
from tests.data_tests.panels import f0, load, long_file

NAN = math.nan


def test_missing_rows_and_tradable_false_are_invalid(tmp_path):
    # 5 dates x 3 ids; (2, 1) is absent, (3, 2) is not tradable, (4, 0) has no tradable value
    path = long_file(
        tmp_path / "p.parquet",
        5,
        3,
        {
            "f0": f0,
            "target": lambda d, s: d + s / 10,
            "tradable": lambda d, s: None if (d, s) == (4, 0) else (d, s) != (3, 2),
        },
        drop={(2, 1)},
    )
    panel, _ = load(path, tradable="tradable")
    expected = np.ones((5, 3), dtype=bool)
    expected[2, 1] = expected[3, 2] = expected[4, 0] = False
    np.testing.assert_array_equal(panel.valid, expected)
    np.testing.assert_array_equal(np.isnan(panel.target), ~expected)
    assert panel.values[2, 1, 0] != panel.values[2, 1, 0]  # absent row: NaN
    assert panel.values[1, 2, 0] == 102.0
    assert panel.target[4, 2] == pytest.approx(4.2)
    assert list(panel.ids) == ["S0", "S1", "S2"] and panel.feature_names == ["f0"]


def test_nan_features_invalidate_a_row_only_above_max_missing(tmp_path):
    # 2 features; at (1, 0) one of 2 is missing (share 0.5), at (2, 0) both are
    def f1(d, s):
        return None if (d, s) in ((1, 0), (2, 0)) else 1.0

    path = long_file(
        tmp_path / "p.parquet",
        4,
        2,
        {"f0": lambda d, s: None if (d, s) == (2, 0) else f0(d, s), "f1": f1, "target": f0},
    )
    panel, _ = load(path, max_missing=0.5)
    assert panel.valid[:, 0].tolist() == [True, True, False, True]
    panel, _ = load(path, max_missing=0.4)
    assert panel.valid[:, 0].tolist() == [True, False, False, True]
    assert panel.valid[:, 1].all()


def test_nan_target_is_not_a_label_but_the_row_stays_a_window_step(tmp_path):
    path = long_file(
        tmp_path / "p.parquet",
        4,
        1,
        {"f0": f0, "target": lambda d, s: NAN if d == 1 else float(d)},
    )
    panel, _ = load(path)
    assert panel.valid[:, 0].all()
    assert panel.labelled[:, 0].tolist() == [True, False, True, True]


def test_single_series_ordered_by_an_order_column(tmp_path):
    # a Kaggle-style file: one series, rows shuffled, ordered by ts_id (with gaps in ts_id)
    ts = np.array([7, 3, 5, 1, 9, 2])
    df = pl.DataFrame({"ts_id": ts, "x1": ts * 10.0, "x2": -ts * 1.0, "resp": ts / 100})
    path = tmp_path / "train.csv"
    df.write_csv(path)
    with pytest.raises(DataError, match=r"target = 'resp' is given but .*\['x1', 'x2'\]"):
        load(path, id="", order="ts_id", target="resp", features=())  # other columns: labels?
    panel, cfg = load(path, id="", order="ts_id", target="resp", features=("x*",))
    assert panel.values.shape == (6, 1, 2)
    assert panel.dates.tolist() == [1, 2, 3, 5, 7, 9]
    assert panel.values[:, 0, 0].tolist() == [10, 20, 30, 50, 70, 90]
    assert panel.feature_names == ["x1", "x2"]  # ts_id is the time axis, resp the target
    assert panel.target[:, 0] == pytest.approx([0.01, 0.02, 0.03, 0.05, 0.07, 0.09])
    assert panel.valid.all() and list(panel.ids) == ["series"]


def test_single_series_without_id_column_needs_id_unset(tmp_path):
    df = pl.DataFrame({"date": ["2020-01-02", "2020-01-03"], "x": [1.0, 2.0], "y": [0.1, 0.2]})
    path = tmp_path / "one.csv"
    df.write_csv(path)
    with pytest.raises(DataError, match=r"'symbol' \(\[data\] id\) not found.*id = \"\""):
        load(path, id="symbol", target="y", features=("x",))
    panel, _ = load(path, id="", target="y", features=("x",))
    assert panel.values[:, 0, 0].tolist() == [1.0, 2.0]
    assert str(panel.dates[0]) == "2020-01-02"
    with pytest.raises(DataError, match=r"one series.*\[data\] normalize = 'cs_zscore'"):
        load(path, id="", target="y", features=("x",), normalize="cs_zscore")
    # every per-date setting at once, with the per-series values to use
    with pytest.raises(DataError) as e:
        load(path, id="", target="y", features=("x",), normalize="cs_rank", target_cs="rank")
    assert str(e.value) == (
        f"{path}: the file is one series (no [data] id), but these settings work across "
        "securities per date: [data] target_cs = 'rank' (use 'none'); [data] normalize = "
        "'cs_rank' (use 'robust' or 'none'); a study of it needs --target-cs none --normalize "
        'robust on optuna-run, or target_cs = "none" and normalize = "robust" under [data] in '
        "a study TOML given with --config"
    )
    with pytest.raises(DataError, match=r"one series.*\[data\] normalize = 'cs_rank\+level'"):
        load(path, id="", target="y", features=("x",), normalize="cs_rank+level")


def test_a_panel_file_of_one_security_is_not_said_to_lack_an_id(tmp_path):
    # the id column is there and named; it holds one security
    path = tmp_path / "one.csv"
    pl.DataFrame(
        {
            "date": ["2020-01-02", "2020-01-03"],
            "symbol": ["AAA"] * 2,
            "x": [1.0, 2.0],
            "y": [0.1, 0.2],
        }
    ).write_csv(path)
    with pytest.raises(DataError) as e:
        load(path, id="symbol", target="y", features=("x",), normalize="cs_rank", target_cs="none")
    assert str(e.value) == (
        f"{path}: the file holds one security (its id column 'symbol', [data] id, has one "
        "value), but this setting works across securities per date: [data] normalize = "
        "'cs_rank' (use 'robust' or 'none'); a study of it needs --normalize robust on "
        'optuna-run, or normalize = "robust" under [data] in a study TOML given with --config'
    )
    # a panel model's predictions on it: no setting to change, the model needs a panel
    cfg = DataConfig(path=str(path), id="symbol", target="y", features=("x",), normalize="cs_rank")
    with pytest.raises(DataError) as e:
        load_panel(cfg, for_prediction=True)
    assert str(e.value) == (
        f"{path}: the file holds one security (its id column 'symbol', [data] id, has one "
        "value), but the model was trained on a panel and reads each date across securities "
        "([data] normalize = 'cs_rank'): give it a file of the "
        "securities of each date, or train a model of one series for this file"
    )


def test_duplicate_order_values_in_a_single_series_are_refused(tmp_path):
    path = tmp_path / "dup.csv"
    pl.DataFrame({"ts_id": [1, 2, 2], "x": [1.0, 2.0, 3.0], "y": [0.0] * 3}).write_csv(path)
    with pytest.raises(DataError, match=r"dup\.csv: 1 duplicate ts_id row, .*set \[data\] id"):
        load(path, id="", order="ts_id", target="y", features=("x",))


def test_glob_feature_selection(tmp_path):
    cols = {n: f0 for n in ("feature_0", "other", "feature_1", "feature_10", "target")}
    path = long_file(tmp_path / "p.parquet", 3, 2, cols)
    panel, _ = load(path, features=("feature_*",))
    assert panel.feature_names == ["feature_0", "feature_1", "feature_10"]
    panel, _ = load(path, features=("feature_1*", "other", "feature_1"))
    assert panel.feature_names == ["feature_1", "feature_10", "other"]
    # a given target never takes unnamed columns: they may be labels too
    with pytest.raises(DataError, match=r"name the feature columns .*\['feature_0', 'other'"):
        load(path, features=())
    with pytest.raises(DataError, match=r"pattern 'factor_\*' \(\[data\] features\) matches no"):
        load(path, features=("factor_*",))
    with pytest.raises(
        DataError,
        match=r"'target' \(\[data\] features\) is the target column \(\[data\] target\); it",
    ):
        load(path, features=("feature_0", "target"))
    with pytest.raises(DataError, match=r"'id' \(\[data\] features\) is the id column \("):
        load(path, features=("feature_0", "id"))


def test_every_missing_feature_name_and_empty_pattern_is_named_at_once(tmp_path):
    cols = {n: f0 for n in ("f000", "f001", "target")}
    path = long_file(tmp_path / "p.parquet", 3, 2, cols)
    with pytest.raises(DataError) as err:
        load(path, features=("f000", "f999", "g*", "x1"))
    msg = str(err.value)
    assert msg.startswith(
        f"{path}: column 'f999' ([data] features) not found; "
        "pattern 'g*' ([data] features) matches no column; "
        "column 'x1' ([data] features) not found; columns are ["
    ), msg
    # a pattern in the wrong case: the one that matches is suggested
    with pytest.raises(
        DataError,
        match=r"pattern 'F00\*' \(\[data\] features\) matches no "
        r"column \(did you mean 'f00\*'\?\); columns are",
    ):
        load(path, features=("F00*",))


def test_default_features_skip_price_levels_and_derive_past_only_ohlcv(tmp_path):
    # close doubles every day, volume 0 at d = 2: log(0) gives NaN features, not an error
    cols = {
        "open": lambda d, s: 2.0**d,
        "high": lambda d, s: 2.0**d * 1.5,
        "low": lambda d, s: 2.0**d,
        "close": lambda d, s: 2.0**d,
        "volume": lambda d, s: 0.0 if d == 2 else 1000.0,
        "factor": f0,
    }
    path = long_file(tmp_path / "bars.parquet", 6, 1, cols)
    panel, _ = load(path, target=None, horizon=1, max_missing=1.0, ohlcv_set="basic")
    names = panel.feature_names
    assert names == ["ret_1", "ret_5", "ret_20", "hl_range", "oc_ret", "vol_chg", "volat_20"] + [
        "factor"
    ]
    col = {n: panel.values[:, 0, j] for j, n in enumerate(names)}
    ln2 = math.log(2)
    assert np.isnan(col["ret_1"][0]) and col["ret_1"][1:] == pytest.approx([ln2] * 5)
    assert np.isnan(col["ret_5"][:5]).all() and col["ret_5"][5] == pytest.approx(5 * ln2)
    assert col["hl_range"] == pytest.approx([math.log(1.5)] * 6)
    assert col["oc_ret"] == pytest.approx([0.0] * 6)
    assert np.isnan(col["vol_chg"]).tolist() == [True, False, True, True, False, False]
    assert col["factor"].tolist() == [0, 100, 200, 300, 400, 500]
    # target: forward return close[d + 1] / close[d] - 1 = 1, none at the last date
    assert panel.target[:5, 0] == pytest.approx([1.0] * 5) and np.isnan(panel.target[5, 0])


def _bars(tmp_path, name="bars.csv", **extra):
    cols = {
        "open": lambda d, s: 10.0 + d + s,
        "high": lambda d, s: 11.0 + d + s,
        "low": lambda d, s: 9.0 + d + s,
        "close": lambda d, s: 10.5 + d + s,
        "volume": lambda d, s: 1000.0 + d * s,
        "factor": f0,
    }
    return long_file(tmp_path / name, 30, 3, cols | extra)


def test_a_mapped_ohlcv_column_that_is_absent_is_refused(tmp_path):
    # the file's columns are high / low / volume: mapped to other names, they are not there
    path = _bars(tmp_path)
    with pytest.raises(DataError) as e:
        load(path, target=None, high="hi", low="lo")
    msg = str(e.value)
    assert msg.startswith(f"{path}: column 'hi' ([data] high) not found (did you mean 'high'?)")
    assert "column 'lo' ([data] low) not found (did you mean 'low'?)" in msg and "\n" not in msg
    with pytest.raises(DataError, match=r"column 'vol' \(\[data\] volume\) not found"):
        load(path, target=None, volume="vol")
    with pytest.raises(DataError, match=r"column 'px' \(\[data\] close\) not found"):
        load(path, features=("factor",), target="factor", close="px")


def test_raw_ohlcv_levels_are_never_default_features(tmp_path):
    # a role's default column mapped to no role (a raw close beside the adjusted one, high /
    # low with derivation off) is a price level: not taken as a feature
    path = _bars(tmp_path, adj_close=lambda d, s: 5.0 + d + s)
    panel, _ = load(path, target=None, close="adj_close", ohlcv_set="basic", max_missing=1.0)
    assert "close" not in panel.feature_names and "adj_close" not in panel.feature_names
    assert panel.feature_names[-1] == "factor" and "hl_range" in panel.feature_names
    panel, _ = load(_bars(tmp_path, "b.csv"), target=None, ohlcv_features=False, high="hi")
    assert panel.feature_names == ["factor"]


def test_forward_return_is_invalid_when_not_tradable_horizon_dates_later(tmp_path):
    # security 0: close = d + 1, absent at d = 3, not tradable at d = 6 (S1 keeps the dates)
    path = long_file(
        tmp_path / "p.parquet",
        8,
        2,
        {"close": lambda d, s: d + 1.0, "ok": lambda d, s: (d, s) != (6, 0), "x": f0},
        drop={(3, 0)},
    )
    panel, _ = load(path, target=None, horizon=2, tradable="ok", ohlcv_features=False)
    got = panel.target[:, 0]
    # d -> d + 2: 0->2 ok, 1->3 absent, 2->4 ok, 3 absent, 4->6 not tradable, 5->7 ok, 6, 7 none
    ok = [True, False, True, False, False, True, False, False]
    assert (~np.isnan(got)).tolist() == ok
    assert got[[0, 2, 5]] == pytest.approx([3 / 1 - 1, 5 / 3 - 1, 8 / 6 - 1])


def test_a_derived_target_with_no_value_names_its_cause(tmp_path):
    # the horizon beyond the file's dates, a close with no value or none positive, a tradable
    # column marking no row tradable: each named, not "the target has no value"
    def bars(name, close, **extra):
        cols = {"close": close, "f0": f0, "ok": lambda d, s: True} | extra
        return long_file(tmp_path / name, 40, 3, cols)

    good = bars("good.parquet", lambda d, s: 10.0 + d)
    with pytest.raises(DataError) as e:
        load(good, target=None, horizon=1000)
    assert str(e.value) == (
        f"{good}: [data] horizon (--horizon) = 1000 exceeds the file's 40 dates, so no date "
        "has a close 1000 dates later to derive the forward-return target from; expected a "
        "horizon below 40"
    )
    with pytest.raises(DataError, match=r"horizon \(--horizon\) = 40 equals the file's 40 dates"):
        load(good, target=None, horizon=40)
    assert np.isfinite(load(good, target=None, horizon=39)[0].target).sum() == 3
    nan = bars("nan.parquet", lambda d, s: NAN, target=f0)  # NaN, not empty: numeric
    with pytest.raises(
        DataError, match=r"^\S+nan.parquet: column 'close' \(\[data\] close\) has no"
    ):
        load(nan, target=None, features=("f0",))  # its column `target` is no feature
    with pytest.raises(DataError, match=r"column 'close' \(\[data\] close\) has no value on any"):
        load(nan, features=("f0",))  # a given target: rows without a close are not tradable
    for close in (0.0, -5.0):
        bad = bars("bad.parquet", lambda d, s, c=close: c)
        with pytest.raises(DataError) as e:
            load(bad, target=None)
        msg = str(e.value)
        assert msg.startswith(f"{bad}: column 'close' ([data] close) has no positive value")
        assert msg.endswith("expected positive prices")
    shut = bars("shut.parquet", lambda d, s: 10.0 + d, ok=lambda d, s: False)
    with pytest.raises(DataError, match=r"column 'ok' \(\[data\] tradable\) marks no row"):
        load(shut, target=None, tradable="ok")


def test_a_given_target_with_no_value_is_not_blamed_on_a_tradable_column(tmp_path):
    # no [data] tradable: "no finite value on a tradable row" named a setting not made
    path = long_file(tmp_path / "nan.parquet", 40, 3, {"f0": f0, "target": lambda d, s: NAN})
    with pytest.raises(DataError) as e:
        load(path, features=("f0",))
    assert str(e.value) == (
        f"{path}: column 'target' ([data] target) has no finite value on any row; expected numbers"
    )


def test_a_given_target_on_rows_without_a_close_is_not_said_to_have_no_value(tmp_path):
    # the target's values all on rows without a close (not tradable): "no finite value on
    # any row" denied the values the file holds
    cols = {
        "close": lambda d, s: 10.0 + d if d % 2 else NAN,
        "f0": f0,
        "target": lambda d, s: NAN if d % 2 else 0.01,
    }
    path = long_file(tmp_path / "apart.parquet", 40, 3, cols)
    with pytest.raises(DataError) as e:
        load(path, features=("f0",))
    assert str(e.value) == (
        f"{path}: column 'target' ([data] target) has no finite value on a row with a close "
        "(column 'close', [data] close: a row without one is not tradable); expected numbers"
    )


def test_classification_targets(tmp_path):
    from data.errors import DataWarning

    # 6 securities, target = s - 2.5 + d: up/down and per-date tercile classes
    path = long_file(
        tmp_path / "p.parquet",
        3,
        6,
        {"f0": f0, "target": lambda d, s: NAN if (d, s) == (2, 5) else s - 2.5 + d},
    )
    panel, _ = load(path, task="classification", n_classes=2)
    assert panel.target[0].tolist() == [0, 0, 0, 1, 1, 1]
    assert panel.target[1].tolist() == [0, 0, 1, 1, 1, 1]
    assert np.isnan(panel.target[2, 5]) and not panel.labelled[2, 5]
    # a per-date target_cs is not applied to up/down classes: said, not silently dropped
    with pytest.warns(DataWarning, match=r"target_cs = 'rank' is not applied to the 2 up/down"):
        ranked, _ = load(path, task="classification", n_classes=2, target_cs="rank")
    assert ranked.target[1].tolist() == [0, 0, 1, 1, 1, 1]  # the sign of the target
    panel, _ = load(path, task="classification", n_classes=3)
    assert panel.target[0].tolist() == [0, 0, 1, 1, 2, 2]  # the same per date, whatever d
    assert panel.target[1].tolist() == [0, 0, 1, 1, 2, 2]
    assert panel.target[2, :5].tolist() == [0, 0, 1, 2, 2]  # 5 ranked: 0, .25, .5, .75, 1


def test_more_quantile_classes_than_securities_are_refused(tmp_path):
    path = long_file(tmp_path / "p.parquet", 3, 6, {"f0": f0, "target": f0})
    panel, _ = load(path, task="classification", n_classes=6)
    assert panel.target[0].tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(DataError) as err:
        load(path, task="classification", n_classes=100_000)
    assert str(err.value) == (
        f"{path}: [data] n_classes = 100000 per-date quantile classes, but the file has 6 "
        "securities; expected n_classes <= 6"
    )


def test_classification_trains_with_cross_entropy(tmp_path):
    import torch

    from data import Prepared
    from models import TrainParams, build_model, fit

    rng = np.random.default_rng(0)
    noise = rng.normal(size=(40, 8))
    path = long_file(tmp_path / "p.parquet", 40, 8, {"f0": lambda d, s: noise[d, s], "target": f0})
    panel, cfg = load(path, task="classification", n_classes=3, val_frac=0.3, test_frac=0.0)
    data = Prepared(panel, cfg, torch.device("cpu"))
    model = build_model(
        "lstm",
        n_features=1,
        n_outputs=3,
        hidden_dim=4,
        num_layers=1,
        dropout=0.0,
        head_dim=0,
        time_steps=3,
    )
    r = fit(model, data, TrainParams(time_steps=3, epochs=1, batch_size=64, lr=1e-2, seed=0))
    assert math.isfinite(r.best_val_loss) and "accuracy" in r.history[0].val


def test_cross_sectional_target_transforms(tmp_path):
    path = long_file(tmp_path / "p.parquet", 2, 4, {"f0": f0, "target": lambda d, s: s * (d + 1.0)})
    panel, _ = load(path, target_cs="demean")
    assert panel.target[1].tolist() == pytest.approx([-3, -1, 1, 3])
    panel, _ = load(path, target_cs="rank")
    assert panel.target[0].tolist() == pytest.approx([-0.5, -1 / 6, 1 / 6, 0.5])
    panel, _ = load(path, target_cs="zscore", target_scale=2.0)
    z = (np.arange(4) - 1.5) / np.arange(4).std()
    assert panel.target[0] == pytest.approx(2 * z) and panel.target[1] == pytest.approx(2 * z)


def test_target_winsorised_per_date(tmp_path):
    values = [0.0, 1.0, 2.0, 3.0, 100.0]
    path = long_file(tmp_path / "p.parquet", 2, 5, {"f0": f0, "target": lambda d, s: values[s]})
    panel, _ = load(path, target_winsor=0.25)  # quantiles 0.25 and 0.75 of the date: 1 and 3
    assert panel.target[0].tolist() == [1, 1, 2, 3, 3]


def test_weight_column(tmp_path):
    path = long_file(
        tmp_path / "p.parquet", 3, 2, {"f0": f0, "target": f0, "w": lambda d, s: d + 1.0}
    )
    panel, _ = load(path, weight="w")
    assert panel.weight is not None and panel.weight[:, 1].tolist() == [1, 2, 3]
    assert panel.feature_names == ["f0"]  # the weight is not a feature
    path = long_file(tmp_path / "n.parquet", 3, 2, {"f0": f0, "target": f0, "w": lambda d, s: -1.0})
    with pytest.raises(DataError, match=r"'w' \(\[data\] weight\) has 6 negative"):
        load(path, weight="w")


def test_csv_missing_markers_read_as_missing_in_numeric_columns(tmp_path):
    # one "n/a" (or NA, null, -, empty) in a factor column must not make it a string column
    markers = ["n/a", "NA", "null", "-", ""]
    path = tmp_path / "p.csv"
    lines = ["date,id,f0,f1,target"]
    for d in range(6):
        for s in range(2):
            f1 = (
                markers[d % len(markers)]
                if (d, s) in {(0, 0), (1, 1), (2, 0), (3, 1), (4, 0)}
                else "1.5"
            )
            lines.append(f"2020-01-0{d + 1},S{s},{d * 100 + s},{f1},0.1")
    path.write_text("\n".join(lines) + "\n")
    panel, _ = load(path)
    assert panel.feature_names == ["f0", "f1"]
    f1 = panel.values[:, :, 1]
    assert np.isnan(f1).sum() == 5
    assert f1[5, 0] == 1.5


def test_a_column_left_out_for_its_type_is_named_in_a_warning(tmp_path):
    path = long_file(
        tmp_path / "p.parquet",
        4,
        2,
        {"f0": f0, "sector": lambda d, s: "tech", "close": lambda d, s: 10.0 + d},
    )
    from data.load import DataWarning

    # no given target: the forward return of close, and every numeric column a feature
    with pytest.warns(DataWarning, match=r"sector \(String\)"):
        panel, _ = load(path, target=None)
    assert panel.feature_names[-1] == "f0" and "sector" not in panel.feature_names


def test_every_missing_column_is_named_at_once_with_did_you_mean(tmp_path):
    path = long_file(tmp_path / "p.parquet", 4, 2, {"f0": f0, "target": lambda d, s: 0.1})
    with pytest.raises(DataError) as e:
        load(path, target="targte", weight="wieght", features=("f0", "f9"))
    msg = str(e.value)
    assert "'targte' ([data] target) not found (did you mean 'target'?)" in msg
    assert "'wieght' ([data] weight) not found" in msg
    assert "'f9' ([data] features) not found" in msg
    assert "\n" not in msg


def _no_value_files(tmp_path):
    """The same panel with feature f_nan empty on every row, written five ways."""
    cols = {"f0": f0, "target": lambda d, s: d + s / 10}
    nan = long_file(tmp_path / "nan.parquet", 4, 2, cols | {"f_nan": lambda d, s: NAN})
    null = long_file(tmp_path / "null.parquet", 4, 2, cols | {"f_nan": lambda d, s: None})
    csv = long_file(tmp_path / "empty.csv", 4, 2, cols | {"f_nan": lambda d, s: None})
    typed = tmp_path / "typed.parquet"  # every value null, yet typed as floats
    pl.read_parquet(null).with_columns(pl.col("f_nan").cast(pl.Float64)).write_parquet(typed)
    nan_csv = tmp_path / "nan.csv"  # written as NaN: a missing marker in a CSV file
    pl.read_parquet(nan).write_csv(nan_csv)
    assert pl.read_parquet(null).schema["f_nan"] == pl.Null
    assert pl.read_csv(csv).schema["f_nan"] == pl.String  # what polars makes of it alone
    return [nan, null, typed, csv, nan_csv]


@pytest.mark.parametrize("features", [("f0", "f_nan"), ("f_nan",)])
def test_a_feature_column_with_no_value_is_refused_whatever_the_file(tmp_path, features):
    for path in _no_value_files(tmp_path):
        with pytest.raises(DataError) as e:
            load(path, features=features)
        msg = str(e.value)
        assert msg.startswith(f"{path}: feature column 'f_nan' ([data] features) has no value")
        assert "leave it out of [data] features (--features)" in msg and "\n" not in msg


def test_a_feature_column_with_no_value_from_a_glob_or_by_default_is_refused(tmp_path):
    for path in _no_value_files(tmp_path):
        with pytest.raises(DataError, match=r"'f_nan' .* no value.* without it in \[data\]"):
            load(path, features=("f*",))
        with pytest.raises(DataError, match=r"'f_nan' .* no value.* without it in \[data\]"):
            load(path, target=None, close="target")  # default features: every other numeric column


def test_an_empty_csv_column_is_numeric_and_named_when_it_is_a_role(tmp_path):
    path = long_file(
        tmp_path / "p.csv", 4, 2, {"f0": f0, "target": lambda d, s: 0.1, "w": lambda d, s: None}
    )
    with pytest.raises(DataError, match=r"column 'w' \(\[data\] weight\) has no value"):
        load(path, weight="w")
    with pytest.raises(DataError, match=r"column 'w' \(\[data\] target\) has no value"):
        load(path, target="w")


def test_for_prediction_a_given_target_may_be_absent_or_empty(tmp_path):
    cols = {"f0": f0, "f1": lambda d, s: float(d - s)}
    absent = long_file(tmp_path / "absent.parquet", 5, 2, cols)
    empty = long_file(tmp_path / "empty.csv", 5, 2, cols | {"target": lambda d, s: None})
    with pytest.raises(DataError, match=r"column 'target' \(\[data\] target\) not found"):
        load(absent)
    with pytest.raises(DataError, match=r"column 'target' \(\[data\] target\) has no value"):
        load(empty)
    for path in (absent, empty):
        cfg = DataConfig(path=str(path), id="id", target="target", features=("f*",))
        panel = load_panel(cfg, for_prediction=True)
        assert not panel.has_target and np.isnan(panel.target).all()
        assert panel.valid.all()  # windows need valid dates, not labels
        assert panel.feature_names == ["f0", "f1"]  # an empty target is not a feature
    labelled = long_file(tmp_path / "l.parquet", 5, 2, cols | {"target": lambda d, s: 0.1})
    panel = load_panel(DataConfig(path=str(labelled), id="id", target="target", features=("f*",)))
    assert panel.has_target


def test_for_prediction_the_weight_column_may_be_absent_or_empty(tmp_path):
    cols = {"f0": f0, "target": lambda d, s: 0.1}
    absent = long_file(tmp_path / "absent.parquet", 5, 2, cols)
    empty = long_file(tmp_path / "empty.csv", 5, 2, cols | {"w": lambda d, s: None})
    with pytest.raises(DataError, match=r"column 'w' \(\[data\] weight\) not found"):
        load(absent, weight="w")
    for path in (absent, empty):
        cfg = DataConfig(path=str(path), id="id", target="target", features=("*",), weight="w")
        panel = load_panel(cfg, for_prediction=True)
        assert panel.weight is None and panel.feature_names == ["f0"]  # w is no feature


def test_the_time_axis_of_a_file_names_every_missing_column_at_once(tmp_path):
    from data.panel import time_axis

    path = long_file(tmp_path / "p.parquet", 3, 2, {"f0": f0}).rename(tmp_path / "q.parquet")
    pl.read_parquet(path).rename({"date": "trade_dt", "id": "code"}).write_parquet(path)
    with pytest.raises(DataError) as err:
        time_axis(DataConfig(path=str(path), id="id", target="target", features=("f0",)))
    assert str(err.value) == (  # a file to predict on: the flags that name its columns
        f"{path}: column 'date' ([data] date) not found; name this file's column with "
        "predict --date; column 'id' ([data] id) not found; name this file's column with "
        "predict --id; columns are ['trade_dt', 'code', 'f0']"
    )


def test_for_prediction_a_feature_with_no_value_is_a_warning(tmp_path):
    from data.load import DataWarning

    path = long_file(
        tmp_path / "p.parquet", 4, 2, {"f0": f0, "f1": lambda d, s: None, "target": f0}
    )
    cfg = DataConfig(path=str(path), id="id", target="target", features=("f0", "f1"))
    with pytest.warns(DataWarning, match=r"feature column 'f1' .* has no value"):
        panel = load_panel(cfg, for_prediction=True)
    assert np.isnan(panel.values[:, :, 1]).all() and panel.valid.all()


def test_the_load_says_each_step_once(tmp_path):
    """One line as each step starts and one at the end, with the file's own counts (read
    here by polars directly) and the panel's shape."""
    # 7 dates x 3 ids, one row absent; a column the config leaves out is still counted
    path = long_file(
        tmp_path / "p.csv",
        7,
        3,
        {"f0": f0, "f1": lambda d, s: d - s, "other": lambda d, s: 1, "target": f0},
        drop={(2, 1)},
    )
    lines: list[str] = []
    cfg = DataConfig(path=str(path), id="id", target="target", features=("f*",))
    panel = load_panel(cfg, say=lines.append)
    raw = pl.read_csv(path)
    assert raw.shape == (20, 6)
    bytes_ = panel.values.nbytes
    assert lines[:-1] == [
        f"reading 20 rows x 6 columns from {path} ({path.stat().st_size} bytes)...",
        "building the dense panel: 7 dates x 3 securities...",
        f"features: 2 into a 7 x 3 x 2 float32 array ({bytes_} bytes)...",
        "target and checks...",
    ]
    assert lines[-1].startswith("panel done in ") and lines[-1].endswith("s")
    assert panel.values.shape == (7, 3, 2)
    # a load told nothing says nothing
    assert load_panel(cfg).values.shape == (7, 3, 2)
    assert [size(n) for n in (999, 1000, 850_000, 310_000_000, 2_213_000_000)] == [
        "999 bytes", "1.0 KB", "850 KB", "310 MB", "2.2 GB",
    ]  # fmt: skip


@pytest.mark.parametrize("value", ["2015/01-05", "20150105x", "Jan 5th"])
def test_dates_in_no_format_polars_can_infer_are_named_as_unparseable(tmp_path, value):
    path = tmp_path / "p.csv"
    rows = [f"{value},A,1.0,0.5", f"{value},B,2.0,0.1"]
    path.write_text("date,id,f0,target\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError) as err:
        load(path, target="target", features=["f0"])
    assert str(err.value).startswith(
        f"{path}: column 'date' ([data] date) has 2 unparseable dates, e.g. [{value!r}];"
    )


def test_a_count_of_one_is_singular_and_large_counts_have_separators(tmp_path):
    from data.errors import plural
    from data.load import duplicate_rows

    assert [plural(n, "split") for n in (1, 2, 12870)] == ["1 split", "2 splits", "12,870 splits"]
    path = tmp_path / "p.csv"
    path.write_text("date,id,f0,target\n2015-01-05,A,1.0,0.5\n2015-13-05,B,2.0,0.1\n")
    with pytest.raises(DataError, match=r"has 1 unparseable date, e\.g\. \['2015-13-05'\];"):
        load(path, target="target", features=["f0"])
    path.write_text("date,id,f0,target\n2015-01-05,A,1.0,0.5\n,B,2.0,0.1\n")
    with pytest.raises(DataError, match=r"column 'date' \(\[data\] date\) has 1 empty value$"):
        load(path, target="target", features=["f0"])
    one = str(duplicate_rows(path, "date", "id", 1, "2015-01-05", "A"))
    assert one.startswith(f"{path}: 1 duplicate (date, id) row, e.g. 2015-01-05 A;")
    many = str(duplicate_rows(path, "date", "id", 1234, "2015-01-05", "A"))
    assert many.startswith(f"{path}: 1,234 duplicate (date, id) rows, e.g.")


@pytest.mark.parametrize(
    "first, said",
    [
        ("01/07/2019", "like '01/07/2019', which read as day/month or as month/day"),
        ("07/01/2019", "like '07/01/2019', which read as day/month or as month/day"),
        ("1.7.19", "like '1.7.19', which read as day/month or as month/day"),
        ("13/07/2019", "written day first, e.g. '13/07/2019'"),  # 13 is no month
        ("07/29/2019", "written month first, e.g. '07/29/2019'"),
        # a two-digit year (19-07-01 may be year first) or two separators: no order claimed
        ("19-07-01", "like '19-07-01', which read as day/month or as month/day"),
        ("13.07.2019", "like '13.07.2019', which read as day/month or as month/day"),
    ],
)
def test_dates_day_or_month_first_are_refused_not_guessed(tmp_path, first, said):
    """A file of month-first dates whose days never pass 12 would read day-first (or the
    other way round) without a word, scrambling the dates and the split: refused instead,
    with the format that reads them where a value shows the order."""
    path = tmp_path / "p.csv"
    rows = [f"{first},A,1.0,0.5", "02/07/2019,A,2.0,0.1"]
    path.write_text("day,id,f0,target\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError) as err:
        load(path, date="day", target="target", features=["f0"])
    assert str(err.value).startswith(
        f"{path}: column 'day' ([data] date) has dates {said}; write them as ISO dates "
        "(2019-07-01), e.g. with polars: pl.col(name).str.to_date('"
    )
    if "day first" in said:
        assert str(err.value).endswith("str.to_date('%d/%m/%Y')")
    if "month first" in said:
        assert str(err.value).endswith("str.to_date('%m/%d/%Y')")
    mixed = tmp_path / "mixed.csv"  # both orders in one file: said so
    mixed.write_text("day,id,f0,target\n13/07/2019,A,1.0,0.5\n07/14/2019,A,2.0,0.1\n")
    with pytest.raises(DataError) as err:
        load(mixed, date="day", target="target", features=["f0"])
    assert str(err.value) == (
        f"{mixed}: column 'day' ([data] date) has dates written day first ('13/07/2019') and "
        "month first ('07/14/2019'); write them as ISO dates (2019-07-01)"
    )
    iso = tmp_path / "iso.csv"  # the same dates written ISO read as written
    iso.write_text("day,id,f0,target\n2019-07-01,A,1.0,0.5\n2019-07-02,A,2.0,0.1\n")
    panel, _ = load(iso, date="day", target="target", features=["f0"])
    assert [str(d) for d in panel.dates] == ["2019-07-01", "2019-07-02"]


def test_zoned_times_and_utc_offsets_read_as_the_local_dates_written(tmp_path):
    """A session stored as midnight in its exchange's zone (a zoned Parquet column, or text
    with a UTC offset) is that date, not the UTC instant of the evening before; the split's
    dates given in a config read against the same wall time."""
    import datetime as dt

    days = [dt.datetime(2024, 1, d) for d in (3, 4, 5, 8)]
    frame = pl.DataFrame(
        {"date": days * 2, "id": ["A"] * 4 + ["B"] * 4, "f0": [1.0] * 8, "target": [0.1] * 8}
    )
    zoned = tmp_path / "zoned.parquet"
    frame.with_columns(pl.col("date").dt.replace_time_zone("Asia/Shanghai")).write_parquet(zoned)
    offset = tmp_path / "offset.csv"
    text = frame.with_columns(pl.col("date").dt.strftime("%Y-%m-%dT%H:%M:%S+08:00"))
    text.write_csv(offset)
    utc_z = tmp_path / "z.csv"
    frame.with_columns(pl.col("date").dt.strftime("%Y-%m-%d %H:%M:%SZ")).write_csv(utc_z)
    hours = tmp_path / "hours.csv"  # PostgreSQL's text: an offset of hours only
    frame.with_columns(pl.col("date").dt.strftime("%Y-%m-%d %H:%M:%S+08")).write_csv(hours)
    for path in (zoned, offset, utc_z, hours):
        panel, _ = load(path, target="target", features=["f0"])
        assert [str(d)[:10] for d in panel.dates] == [
            "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08",
        ], path  # fmt: skip
        assert all(str(d)[11:19] in ("", "00:00:00") for d in panel.dates), panel.dates
    # a later part of the zoned file (predict's history) is cut in its zone, at the scan
    from data.columns import resolve_columns
    from data.load import scan, since

    cfg = DataConfig(path=str(zoned), id="id", target="target", features=("f0",))
    lf = scan(zoned)
    part = since(lf, resolve_columns(cfg, lf.collect_schema()), zoned, dt.date(2024, 1, 5))
    assert part.collect()["id"].to_list() == ["A", "A", "B", "B"]
    assert "SELECTION" in part.explain()  # the row groups before it are not read


def test_the_hour_the_clocks_go_back_is_named_not_called_a_duplicate_row(tmp_path):
    """Hourly bars in New York's zone (or as text with their offsets) across the autumn
    change: read as wall times, 01:00 comes twice; the error says so and what to do, instead
    of calling the file's rows duplicates. A panel's dates shared by its ids are no repeat."""
    import datetime as dt

    utc = pl.datetime_range(
        dt.datetime(2024, 11, 3, 3), dt.datetime(2024, 11, 3, 9), "1h", time_zone="UTC", eager=True
    )
    ny = utc.dt.convert_time_zone("America/New_York")
    frame = pl.DataFrame({"time": ny, "f0": [1.0] * 7, "target": [0.1] * 7})
    zoned = tmp_path / "ny.parquet"
    frame.write_parquet(zoned)
    text = tmp_path / "ny.csv"
    frame.with_columns(pl.col("time").dt.strftime("%Y-%m-%dT%H:%M:%S%:z")).write_csv(text)
    for path, how in ((zoned, "in zone America/New_York"), (text, "with UTC offsets")):
        with pytest.raises(DataError) as err:
            load(path, id="", date="time", target="target", features=["f0"])
        assert str(err.value) == (
            f"{path}: column 'time' ([data] date) holds times {how}, read as local wall "
            "times, and 1 wall time repeats where the clocks go back (e.g. 2024-11-03 "
            "01:00:00: two instants); store the times in UTC (in polars: "
            ".dt.convert_time_zone('UTC')) or without the repeated hour"
        ), path
    # a global panel, each exchange at its own local midnight: one date, no repeat; the
    # same instant written two ways is a duplicate row, as it is
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(
        "time,id,f0,target\n2024-01-02T00:00:00+08:00,SH,1.0,0.1\n"
        "2024-01-02T00:00:00-05:00,NY,2.0,0.2\n2024-01-03T00:00:00+08:00,SH,1.5,0.1\n"
        "2024-01-03T00:00:00-05:00,NY,2.5,0.2\n"
    )
    panel, _ = load(mixed, date="time", target="target", features=["f0"])
    assert [str(d)[:10] for d in panel.dates] == ["2024-01-02", "2024-01-03"]
    twice = tmp_path / "twice.csv"
    twice.write_text(
        "time,f0,target\n2024-01-02T10:00:00Z,1.0,0.1\n2024-01-02T10:00:00+00:00,2.0,0.2\n"
    )
    with pytest.raises(DataError, match="duplicate time row"):
        load(twice, id="", date="time", target="target", features=["f0"])
    in_utc = tmp_path / "utc.parquet"
    frame.with_columns(pl.col("time").dt.convert_time_zone("UTC")).write_parquet(in_utc)
    panel, _ = load(in_utc, id="", date="time", target="target", features=["f0"])
    assert len(panel.dates) == 7


def test_eight_digit_dates_read_as_dates_and_small_integers_stay_an_integer_axis(tmp_path):
    """20240105, as an integer or as text (the way many vendors write a trading date), is
    2024-01-05, so date settings and a later cut (`since`) read it as a date; a date column of
    plain day numbers stays an integer axis."""
    from data.columns import resolve_columns
    from data.load import scan, since

    days = ["2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"]
    compact = [int(d.replace("-", "")) for d in days]
    base = {"id": ["A"] * 4, "f0": [1.0, 2.0, 3.0, 4.0], "target": [0.1] * 4}
    for name, column in (("int", compact), ("text", [str(c) for c in compact])):
        path = tmp_path / f"{name}.parquet"
        pl.DataFrame({"date": column, **base}).write_parquet(path)
        panel, cfg = load(path, target="target", features=["f0"], val_start="2024-01-05")
        assert [str(d) for d in panel.dates] == days, name
        lf = scan(path)
        cols = resolve_columns(cfg, lf.collect_schema())
        first = panel.dates[2].astype("datetime64[D]").item()  # a date, as the axis holds it
        assert since(lf, cols, path, first).collect()["f0"].to_list() == [3.0, 4.0], name
    plain = tmp_path / "plain.parquet"
    pl.DataFrame({"date": [1, 2, 3, 4], **base}).write_parquet(plain)
    panel, _ = load(plain, target="target", features=["f0"])
    assert panel.dates.tolist() == [1, 2, 3, 4]
    bad = tmp_path / "bad.parquet"  # eight digits, one of them no date: refused, named
    pl.DataFrame({"date": [20240103, 20240104, 20240100, 20240108], **base}).write_parquet(bad)
    with pytest.raises(DataError) as err:
        load(bad, target="target", features=["f0"])
    assert str(err.value) == (
        f"{bad}: column 'date' ([data] date) holds dates written as eight digits (YYYYMMDD, "
        "e.g. 20240103), but 1 value is no date, e.g. [20240100]"
    )
