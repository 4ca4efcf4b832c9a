"""Normalisation uses no future date: robust statistics from training dates only, and
cross-sectional scores from each date's own rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from data import Prepared
from data.errors import DataError
from tests.data_tests.panels import f0, load, long_file

CFG = dict(val_frac=0.3, test_frac=0.0, normalize="robust")  # 10 dates: train 0..5, val 7..9


def panel_file(path, later=lambda d, s: f0(d, s), drop=frozenset()):
    """10 dates x 3 ids; f0 = d * 100 + s on dates 0..5 and `later(d, s)` from date 6 on."""
    cols = {
        "f0": lambda d, s: f0(d, s) if d < 6 else later(d, s),
        "target": lambda d, s: float(s),
    }
    return long_file(path, 10, 3, cols, drop=drop)


def scaler(path):
    panel, cfg = load(path, **CFG)
    data = Prepared(panel, cfg, torch.device("cpu"))
    assert data.split.train == range(0, 6)
    return data.scaler


def test_robust_statistics_by_hand(tmp_path):
    # training values: 0, 1, 2, 100, ..., 502 (18 values); numpy's linear quantiles
    sc = scaler(panel_file(tmp_path / "a.parquet"))
    assert sc.center[0] == pytest.approx((202 + 300) / 2)
    assert sc.scale[0] == pytest.approx((400.75 - 101.25) / 1.349)
    assert sc.clip == 5.0


def test_robust_statistics_ignore_every_date_after_training(tmp_path):
    base = scaler(panel_file(tmp_path / "a.parquet"))
    changed = scaler(
        panel_file(
            tmp_path / "b.parquet",
            later=lambda d, s: None if (d, s) == (8, 0) else -1e6 * (d + s),
            drop={(7, 1), (9, 2)},
        )
    )
    assert (changed.center, changed.scale) == (base.center, base.scale)
    # and the same change on a training date does move them: the check can fail
    moved = scaler(panel_file(tmp_path / "c.parquet", later=lambda d, s: 0.0))
    assert moved.center[0] == base.center[0]  # date 6 is purged (horizon 1), not training
    early = long_file(
        tmp_path / "d.parquet",
        10,
        3,
        {"f0": lambda d, s: -1e6 if d == 5 else f0(d, s), "target": lambda d, s: float(s)},
    )
    assert scaler(early).center[0] != base.center[0]


@pytest.mark.parametrize("how", ["cs_zscore", "cs_rank"])
def test_cross_sectional_scores_by_hand(tmp_path, how):
    panel, _ = load(panel_file(tmp_path / "a.parquet", drop={(1, 1)}), normalize=how)
    if how == "cs_zscore":
        z = 1 / math.sqrt(2 / 3)  # (s - 1) / std([0, 1, 2])
        assert panel.values[0, :, 0] == pytest.approx([-z, 0, z])
        assert panel.values[1, [0, 2], 0] == pytest.approx([-1, 1])  # (1, 1) is absent
    else:
        assert panel.values[0, :, 0].tolist() == [-0.5, 0, 0.5]
        assert panel.values[1, [0, 2], 0].tolist() == [-0.5, 0.5]
    assert np.isnan(panel.values[1, 1, 0])


@pytest.mark.parametrize("how", ["cs_zscore", "cs_rank"])
def test_cross_sectional_scores_use_no_later_date(tmp_path, how):
    base, _ = load(panel_file(tmp_path / "a.parquet"), normalize=how)
    changed, _ = load(
        panel_file(
            tmp_path / "b.parquet",
            later=lambda d, s: -1e6 * (d + s) ** 2 if s != 1 else 0.0,
            drop={(7, 1)},
        ),
        normalize=how,
    )
    np.testing.assert_array_equal(changed.values[:6], base.values[:6])
    assert not np.array_equal(changed.values[6:], base.values[6:], equal_nan=True)


def test_tied_values_share_their_average_rank_whatever_the_rows_order(tmp_path):
    """A per-date rank (features under cs_rank, the target under target_cs = "rank") gives
    tied values one rank, their average, as the metrics' rank IC does: a ticker's place in
    the file never decides it."""
    from scipy.stats import rankdata

    from data.features import cs_rank

    x = np.array([[0.0, 1.0], [0.0, np.nan], [0.02, 1.0], [0.0, 1.0], [-0.01, np.inf]])
    got = cs_rank(x)
    assert got[:, 0].tolist() == [0.0, 0.0, 0.5, 0.0, -0.5]  # three zeros: ranks 1, 2, 3 -> 2
    assert got[[0, 2, 3], 1].tolist() == [0.0, 0.0, 0.0] and np.isnan(got[[1, 4], 1]).all()
    assert cs_rank(np.zeros((0, 3))).shape == (0, 3) and cs_rank(np.zeros(0)).shape == (0,)
    rng = np.random.default_rng(0)
    for _ in range(50):
        y = rng.integers(0, 4, size=(int(rng.integers(2, 30)), 3)).astype(float)
        y[rng.random(y.shape) < 0.2] = np.nan
        for j in range(3):
            ok = np.isfinite(y[:, j])
            want = (rankdata(y[ok, j]) - 1) / max(ok.sum() - 1, 1) - 0.5 if ok.sum() > 1 else 0.0
            np.testing.assert_allclose(cs_rank(y)[ok, j], want, atol=1e-12)
            shuffled = rng.permutation(len(y))
            np.testing.assert_allclose(cs_rank(y[shuffled])[:, j], cs_rank(y)[shuffled, j])
    tied = panel_file(tmp_path / "t.parquet", later=lambda d, s: 5.0)  # one value from date 6
    panel, _ = load(tied, normalize="cs_rank", target_cs="rank")
    assert (panel.values[6:, :, 0] == 0.0).all()
    assert panel.values[0, :, 0].tolist() == [-0.5, 0.0, 0.5]


def test_levels_by_hand_each_value_its_quantile_among_the_training_rows(tmp_path):
    """normalize = "cs_rank+level": each feature twice, its per-date rank and (NAME:level)
    where it falls among every training row, both in [-0.5, 0.5]."""
    from data.normalize import QUANTILES

    path = panel_file(tmp_path / "a.parquet", drop={(1, 1)})
    panel, cfg = load(path, **{**CFG, "normalize": "cs_rank+level"})
    assert panel.feature_names == ["f0", "f0:level"]
    assert panel.values[0, :, 0].tolist() == [-0.5, 0, 0.5]  # ranked
    assert panel.values[2, :, 1].tolist() == [200, 201, 202]  # raw until a batch maps it
    data = Prepared(panel, cfg, torch.device("cpu"))
    sc = data.scaler
    assert sc.knots is not None and sc.positions is not None
    assert sc.knots.shape == sc.positions.shape == (1, QUANTILES)
    train = sorted(f0(d, s) for d in range(6) for s in range(3) if (d, s) != (1, 1))  # 17 rows
    assert sc.knots[0, 0] == train[0] and sc.knots[0, -1] == train[-1]
    S = data.n_securities
    ends = torch.tensor([d * S + s for d in range(10) for s in range(3) if (d, s) != (1, 1)])
    x = data.batch(ends, 1).x[0]  # (B, 2): the rank, the level
    # a training row's level is its place among the 17 (linear quantiles: k / 16 - 0.5), to
    # the knots' spacing (every 0.1 percentile)
    for i, e in enumerate(ends.tolist()):
        d, s = divmod(e, S)
        if d < 6:
            want = train.index(f0(d, s)) / 16 - 0.5
            assert float(x[i, 1]) == pytest.approx(want, abs=1e-3)
        else:  # later dates lie above every training value: the top
            assert float(x[i, 1]) == pytest.approx(0.5)
    assert float(x[:, 0].abs().max()) <= 0.5


def test_levels_fit_on_training_dates_only_and_tied_values_share_a_place(tmp_path):
    from data.normalize import fit_levels, to_levels

    def levels(path):
        panel, cfg = load(path, **{**CFG, "normalize": "cs_rank+level"})
        return Prepared(panel, cfg, torch.device("cpu")).scaler

    base = levels(panel_file(tmp_path / "a.parquet"))
    later = levels(panel_file(tmp_path / "b.parquet", later=lambda d, s: -1e6 * (d + 1)))
    np.testing.assert_array_equal(base.knots, later.knots)
    early = long_file(
        tmp_path / "c.parquet",
        10,
        3,
        {"f0": lambda d, s: -1e6 if d == 5 else f0(d, s), "target": lambda d, s: float(s)},
    )
    assert not np.array_equal(levels(early).knots, base.knots)  # the check can fail
    # half the training rows share one value: they share their average place, as tied values
    # share their average per-date rank (sorted places 0..3 of 0..7: 1.5 / 7 - 0.5)
    values = np.array([[[0.0], [0.0]], [[0.0], [0.0]], [[1.0], [2.0]], [[3.0], [4.0]]])
    knots, positions = fit_levels(values, np.ones((4, 2), bool), range(0, 4), 0)
    x = torch.tensor([[0.0, 1.0, 4.0, 9.0, -9.0, math.nan]])
    got = to_levels(x.T, torch.as_tensor(knots), torch.as_tensor(positions)).T[0].tolist()
    tied = 1.5 / 7 - 0.5
    assert got[0] == pytest.approx(tied, abs=1e-3)  # to the knots' spacing
    assert got[1] == pytest.approx(4 / 7 - 0.5, abs=1e-6)  # 1.0: place 4 of 0..7
    assert got[2:5] == pytest.approx([0.5, 0.5, tied], abs=1e-3)  # beyond: saturates
    assert math.isnan(got[5])
    rng = np.random.default_rng(0)  # monotone, in range, on many values
    v = rng.normal(size=(50, 40, 3)).astype(np.float32)
    knots, positions = fit_levels(v, np.ones((50, 40), bool), range(0, 30), 1)
    y = torch.as_tensor(np.sort(rng.normal(size=(500, 2)) * 2, axis=0), dtype=torch.float32)
    m = to_levels(y, torch.as_tensor(knots), torch.as_tensor(positions))
    assert (m.diff(dim=0) >= 0).all() and float(m.abs().max()) <= 0.5


def test_a_feature_named_like_a_level_is_refused(tmp_path):
    cols = {
        "f0": lambda d, s: f0(d, s),
        "f0:level": lambda d, s: float(s),
        "target": lambda d, s: float(s),
    }
    path = long_file(tmp_path / "a.parquet", 10, 3, cols)
    with pytest.raises(DataError, match=r"'f0:level' clashes with the level view of 'f0'"):
        load(path, **{**CFG, "normalize": "cs_rank+level"})


def test_each_fold_maps_levels_with_its_own_training_rows(tmp_path):
    """With walk-forward folds each member's batch maps the levels through its fold's
    knots (its own training dates), as each fold's robust scaler does."""
    from data.normalize import to_levels

    rng = np.random.default_rng(0)
    path = long_file(
        tmp_path / "a.parquet",
        60,
        4,
        {"f0": lambda d, s: float(d + rng.normal()), "target": lambda d, s: float(s)},
    )
    panel, cfg = load(path, val_frac=0.2, test_frac=0.0, normalize="cs_rank+level", folds=2)
    data = Prepared(panel, cfg, torch.device("cpu"))
    first, last = data.scalers
    assert first.knots[0, -1] < last.knots[0, -1]  # the first fold trains on earlier dates
    S = data.n_securities
    ends = torch.tensor([[20 * S + 1, 25 * S + 2], [20 * S + 1, 25 * S + 2]])
    x = data.batch(ends, 3, folds=torch.tensor([0, 1])).x  # (T, M, B, F)
    v = torch.as_tensor(panel.values)
    raw = torch.stack([v[18:21, 1, 1:], v[23:26, 2, 1:]], 1)  # (T, B, 1): the windows' levels
    for m, sc in enumerate((first, last)):
        want = to_levels(raw, torch.as_tensor(sc.knots), torch.as_tensor(sc.positions))
        np.testing.assert_allclose(x[:, m, :, 1:].numpy(), want.numpy(), atol=1e-6)
    assert not torch.allclose(x[:, 0, :, 1], x[:, 1, :, 1])
