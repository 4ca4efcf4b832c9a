"""Normalisation uses no future date: robust statistics from training dates only, and
cross-sectional scores from each date's own rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from data import Prepared
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
