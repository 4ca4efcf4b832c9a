"""A leakage harness that can fail: train a real model on a random-walk panel whose target is
the forward return over `horizon` dates, with one extra feature.

- `lagged`: the return over the last `horizon` dates, i.e. the target of `horizon` dates ago,
  known at the window's end date. On a random walk it says nothing about the future, so it
  must not lift validation quality above chance.
- `leak`: the target itself, planted as a feature (it reveals the future). The same pipeline
  must reach near perfect validation quality with it; that half proves the harness detects
  a leak, so the first half means something.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data import DataConfig, Prepared, load_panel
from models import TrainParams, build_model, fit, validate
from tests.data_tests.panels import long_file

H = 3  # horizon
D, S = 140, 40


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    rng = np.random.default_rng(0)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (D, S)), axis=0))  # (D, S)
    lagged = np.full((D, S), np.nan)
    lagged[H:] = close[H:] / close[:-H] - 1  # known at d
    leak = np.full((D, S), np.nan)
    leak[:-H] = close[H:] / close[:-H] - 1  # known only at d + H

    def cell(x):
        return lambda d, s: None if np.isnan(x[d, s]) else float(x[d, s])

    cols = {"close": cell(close), "lagged": cell(lagged), "leak": cell(leak)}
    return long_file(tmp_path_factory.mktemp("leak") / "walk.parquet", D, S, cols)


def val_quality(path, feature):
    """Validation (IC, R^2) of a small LSTM on the 4 features derived from close + `feature`."""
    cfg = DataConfig(
        path=str(path),
        id="id",
        features=(feature,),
        horizon=H,
        ohlcv_set="basic",
        target_cs="zscore",
        val_frac=0.25,
        test_frac=0.0,
    )
    panel = load_panel(cfg)
    assert panel.feature_names[-1] == feature and len(panel.feature_names) == 5
    data = Prepared(panel, cfg, torch.device("cpu"))
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is as fast, and steady on a busy CPU
    model = build_model(
        "lstm",
        n_features=data.n_features,
        n_outputs=1,
        hidden_dim=16,
        num_layers=1,
        dropout=0.0,
        head_dim=0,
        time_steps=5,
    )
    p = TrainParams(time_steps=5, epochs=6, batch_size=256, lr=1e-2, seed=0)
    try:
        fit(model, data, p)
        m = validate(model, data, "val", p)[0]
    finally:
        torch.set_num_threads(threads)
    ends = data.ends("val", 5)
    y = data.target[ends // S, ends % S]
    r2 = 1 - float(m["mse"]) / float(y.var(unbiased=False))
    return float(m["ic"]), r2


def test_a_legitimately_lagged_target_does_not_lift_validation(walk):
    ic, r2 = val_quality(walk, "lagged")
    assert abs(ic) < 0.1 and r2 < 0.05, (ic, r2)


def test_a_planted_future_target_lifts_validation_to_near_perfect(walk):
    ic, r2 = val_quality(walk, "leak")
    assert ic > 0.9 and r2 > 0.8, (ic, r2)


def test_a_column_named_like_a_label_is_no_default_feature(tmp_path):
    """Without [data] features every numeric column but the roles' is a feature; a column
    whose name looks ahead (fwd_ret_3: the target of another horizon, planted) is left out,
    said in one line naming it, before a model can learn from it. Named, it is the user's
    call; a model's prediction file may hold it (realised labels beside the data)."""
    from dataclasses import replace

    from data.columns import looks_like_label
    from data.errors import DataWarning

    rng = np.random.default_rng(1)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (30, 4)), axis=0))
    ahead = np.full((30, 4), np.nan)
    ahead[:-H] = close[H:] / close[:-H] - 1
    cols = {
        "close": lambda d, s: float(close[d, s]),
        "mkt_cap": lambda d, s: float(s + 1),
        "fwd_ret_3": lambda d, s: None if np.isnan(ahead[d, s]) else float(ahead[d, s]),
    }
    path = long_file(tmp_path / "labels.parquet", 30, 4, cols)
    cfg = DataConfig(path=str(path), id="id", ohlcv_set="basic", val_frac=0.2, test_frac=0.2)
    with pytest.warns(DataWarning, match=r"labels.parquet: column\(s\) \['fwd_ret_3'\] look like"):
        panel = load_panel(cfg)
    assert "fwd_ret_3" not in panel.feature_names and panel.feature_names[-1] == "mkt_cap"
    named = load_panel(replace(cfg, features=("mkt_cap", "fwd_ret_3")))
    assert named.feature_names[-2:] == ["mkt_cap", "fwd_ret_3"]
    for_model = load_panel(cfg, for_prediction=True, features=panel.feature_names)
    assert for_model.feature_names == panel.feature_names
    labels = ["y_5", "resp_1", "responder_6", "nextRet", "ret5_fwd", "Return_5D_Ahead", "target"]
    factors = ["forward_pe", "target_price", "ret_1y", "mkt_cap_y", "dividend_yield", "lead_lag"]
    assert all(map(looks_like_label, labels)) and not any(map(looks_like_label, factors))


def test_a_label_matched_by_a_pattern_is_left_out(tmp_path):
    """A pattern in [data] features (`f*`, `*`) that matches a column named like a label
    (fwd_ret_3) leaves it out, said in one line naming the pattern and the column; named as
    itself it is the user's call; a pattern matching only labels is refused."""
    import warnings as w
    from dataclasses import replace

    from data.errors import DataError, DataWarning

    rng = np.random.default_rng(2)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (30, 6)), axis=0))
    cols = {
        "close": lambda d, s: float(close[d, s]),
        "f_size": lambda d, s: float(s + 1 + d % 3),
        "fwd_ret_3": lambda d, s: float(rng.normal()),
    }
    path = long_file(tmp_path / "glob.parquet", 30, 6, cols)
    cfg = DataConfig(
        path=str(path), id="id", ohlcv_set="basic", val_frac=0.2, test_frac=0.2, features=("*",)
    )
    with pytest.warns(
        DataWarning,
        match=r"pattern '\*' \(\[data\] features\) matches column\(s\) \['fwd_ret_3'\] that look like labels",
    ):
        panel = load_panel(cfg)
    assert "fwd_ret_3" not in panel.feature_names and "f_size" in panel.feature_names
    with w.catch_warnings(record=True) as said:
        w.simplefilter("always")
        both = load_panel(replace(cfg, features=("f_*", "fwd_ret_3")))  # named: the user's call
    assert not [x for x in said if "look like labels" in str(x.message)]
    assert both.feature_names[-2:] == ["f_size", "fwd_ret_3"]
    with pytest.raises(DataError, match=r"pattern 'fwd\*' \(\[data\] features\) matches only"):
        load_panel(replace(cfg, features=("fwd*",)))


def test_a_feature_that_tracks_the_target_is_warned_about(walk, tmp_path):
    """The target itself planted as a feature, under a name no rule catches: its per-date
    correlation with the target on the training dates (about 1) is said before any trial;
    the honest lagged return is not. On one series, the correlation over the rows."""
    import warnings as w

    from data.errors import DataWarning

    def cfg(path, feature, **kw):
        return DataConfig(
            path=str(path),
            features=(feature,),
            horizon=H,
            ohlcv_set="basic",
            val_frac=0.25,
            test_frac=0.0,
            **({"id": "id"} | kw),
        )

    with pytest.warns(
        DataWarning,
        match=r"feature column 'leak' \(\+\d\.\d\d\) track the target .*mean per-date correlation",
    ):
        load_panel(cfg(walk, "leak"))
    with w.catch_warnings(record=True) as said:
        w.simplefilter("always")
        load_panel(cfg(walk, "lagged"))
    assert not [x for x in said if "track the target" in str(x.message)]
    import polars as pl

    one = pl.read_parquet(walk).filter(pl.col("id") == pl.col("id").min()).drop("id")
    one.write_parquet(tmp_path / "one.parquet")
    with pytest.warns(DataWarning, match=r"'leak' \(\+\d\.\d\d\) track the target .*\(correlation"):
        load_panel(cfg(tmp_path / "one.parquet", "leak", id=""))
