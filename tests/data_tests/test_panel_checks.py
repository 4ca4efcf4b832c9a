"""What load_panel refuses or warns about in one go: infinite values, a given target's horizon,
features constant over the training dates."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from data import DataError, load_panel
from data.errors import DataWarning
from tests.data_tests.panels import f0, load, long_file


def test_every_column_with_infinite_values_is_named_at_once(tmp_path: Path) -> None:
    inf = math.inf
    cols = {
        "f0": f0,
        "f1": lambda d, s: inf if (d, s) == (1, 0) else 1.0,
        "f2": lambda d, s: -inf if s == 1 else 2.0,
        "f3": lambda d, s: 1e39 if d == 2 else 3.0,  # beyond float32
        "target": lambda d, s: inf if (d, s) == (0, 0) else 0.1,
    }
    path = long_file(tmp_path / "p.parquet", 4, 2, cols)
    with pytest.raises(DataError) as e:
        load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: infinite values (or values beyond float32 range) in 4 ")
    assert "'f1' (1 row), 'f2' (4 rows), 'f3' (2 rows), 'target' (1 row)" in msg
    assert "'f0'" not in msg


def test_an_infinite_target_is_left_empty_when_predicting(tmp_path: Path) -> None:
    """To predict, the target is not needed: its infinite values are left empty, said in a
    warning (an infinite feature is still refused)."""
    from data import DataConfig

    cols = {"f0": f0, "target": lambda d, s: math.inf if (d, s) == (1, 0) else 0.1 * d}
    path = long_file(tmp_path / "p.parquet", 6, 2, cols)
    cfg = DataConfig(path=str(path), id="id", target="target", features=("f0",))
    with pytest.warns(
        DataWarning, match=r"column 'target' \(\[data\] target\) has infinite values in 1 row"
    ):
        panel = load_panel(cfg, for_prediction=True, features=["f0"])
    assert panel.target_raw is not None and np.isnan(panel.target_raw[1, 0])
    assert panel.target_raw[2, 0] == pytest.approx(0.2)
    bad = long_file(tmp_path / "f.parquet", 6, 2, cols | {"f0": lambda d, s: math.inf})
    with pytest.raises(DataError, match=r"infinite values .* 'f0'"):
        load_panel(
            DataConfig(path=str(bad), id="id", target="target", features=("f0",)),
            for_prediction=True,
            features=["f0"],
        )


def _returns_file(tmp_path: Path, horizon: int) -> Path:
    """A given target: the sum of the next `horizon` daily returns (iid), 250 dates x 10 ids."""
    r = np.random.default_rng(0).normal(0, 0.01, (250 + horizon, 10))
    y = np.stack([r[d + 1 : d + 1 + horizon].sum(0) for d in range(250)])
    return long_file(
        tmp_path / f"h{horizon}.parquet", 250, 10, {"f0": f0, "target": lambda d, s: y[d, s]}
    )


def test_a_given_target_longer_than_the_horizon_is_warned_about(tmp_path: Path) -> None:
    five = _returns_file(tmp_path, 5)
    with pytest.warns(DataWarning) as caught:
        load(five, target_scale=100)  # horizon left at 1
    (w,) = [str(c.message) for c in caught]
    assert w.startswith(f"{five}: column 'target' ([data] target) looks like a return over ")
    assert "about 5 dates" in w and "[data] horizon = 1, so the purge" in w
    assert "drops 1 date and training labels overlap" in w
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        load(five, horizon=5, target_scale=100)
        load(five, horizon=6, target_scale=100)  # a longer purge than needed is safe
        load(_returns_file(tmp_path, 1), target_scale=100)


def test_a_target_far_from_unit_size_is_warned_about_with_the_scale_to_set(
    tmp_path: Path,
) -> None:
    """Raw daily returns (sd ~0.01) left at their scale: the warning names the file, the
    training-date standard deviation and the target_scale that brings it near 1; a scaled,
    ranked or per-date z-scored target, or a classification, is not warned about."""
    one = _returns_file(tmp_path, 1)
    with pytest.warns(DataWarning) as caught:
        load(one)
    (w,) = [str(c.message) for c in caught]
    assert w.startswith(f"{one}: the target ('target') has a standard deviation of 0.0")
    assert w.endswith(
        'set [data] target_scale = 100 (--target-scale 100), or target_cs = "zscore" or '
        '"rank" (--target-cs) on a panel'
    )
    # a scale that leaves it small still: the scale that brings it near 1, in all
    with pytest.warns(DataWarning, match=r"target_scale = 200 \(--target-scale 200\)"):
        load(one, target_scale=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        load(one, target_scale=100)
        load(one, target_cs="rank")
        load(one, target_cs="zscore")
        load(one, task="classification")
    big = long_file(
        tmp_path / "big.parquet", 250, 10, {"f0": f0, "target": lambda d, s: 100.0 * (d % 7)}
    )
    with pytest.warns(
        DataWarning, match=r"set \[data\] target_scale = 0.01 \(--target-scale 0.01\)"
    ):
        load(big)


def test_segment_errors_give_the_facts_in_the_data_layers_words(tmp_path: Path) -> None:
    import torch

    from data import Prepared
    from data.errors import SegmentError

    path = long_file(tmp_path / "p.parquet", 30, 3, {"f0": f0, "target": lambda d, s: 0.1 * s})
    panel, cfg = load(path)
    data = Prepared(panel, cfg, torch.device("cpu"), eval_time_steps=2)
    with pytest.raises(SegmentError) as e:
        data.check_cross_section(min_count=5)
    assert e.value.source == str(path)
    assert e.value.facts == (
        "no validation date has 5 securities with a window (at most 3 of 3 on any of its "
        f"{len(data.split.val)} dates)"
    )
    data.check_cross_section(min_count=3)
    with pytest.raises(SegmentError) as e:
        data.check_time_steps(23)
    assert str(e.value) == (
        f"{path}: no train window of time_steps=23: the train segment has "
        f"{len(data.split.train)} dates and no security has 23 consecutive valid dates ending "
        "in it"
    )
    for words in ("--", "[space]", "[study]", "objective"):
        assert words not in str(e.value)


def test_a_feature_constant_over_the_training_dates_is_named_and_left_out(
    tmp_path: Path,
) -> None:
    cols = {
        "f0": f0,
        "openint": lambda d, s: 0.0 if d < 30 else float(s),  # zero on every training date
        "f1": lambda d, s: float(d % 3 - s),
        "late": lambda d, s: None if d < 30 else 1.0 + d,  # no value on the training dates
        "target": lambda d, s: 0.1 * ((d * 7 + s) % 5),
    }
    path = long_file(tmp_path / "p.parquet", 40, 3, cols)
    with pytest.warns(DataWarning) as caught:
        panel, cfg = load(path, features=("f0", "openint", "f1", "late"))
    (w,) = [str(c.message) for c in caught]
    assert w.startswith(f"{path}: feature columns 'openint' (constant), 'late' (no value) ")
    assert "over the 27 training dates" in w and "left out" in w
    assert panel.feature_names == ["f0", "f1"]
    assert panel.values.shape == (40, 3, 2) and panel.values.flags.c_contiguous
    assert panel.values[7, 2].tolist() == [f0(7, 2), float(7 % 3 - 2)]
    assert panel.values[39, 1].tolist() == [f0(39, 1), float(39 % 3 - 1)]
    kept = load_panel(cfg, for_prediction=True)
    assert kept.feature_names == ["f0", "openint", "f1", "late"]
