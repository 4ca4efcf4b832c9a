"""The reversal and momentum baselines of a panel without return features: past returns
built from the labels known by each date, on the target's own scale before any transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data import Prepared
from models.baselines import past_returns
from tests.data_tests.panels import load, long_file


@pytest.mark.parametrize("horizon", [1, 2, 5])
def test_past_returns_sum_known_raw_labels_end_to_end(tmp_path, horizon):
    rng = np.random.default_rng(0)
    y = rng.normal(0, 0.02, (60, 6))
    y[10, 2] = np.nan  # a missing label counts 0
    cols = {
        "f0": lambda d, s: float(rng.normal()),
        "target": lambda d, s: None if np.isnan(y[d, s]) else float(y[d, s]),
    }
    path = long_file(tmp_path / "p.parquet", 60, 6, cols)
    panel, cfg = load(path, target_cs="rank", horizon=horizon, val_frac=0.2, test_frac=0.2)
    assert panel.target_raw is not None  # ranked per date: the signals read the raw labels
    r = past_returns(Prepared(panel, cfg, torch.device("cpu")))
    z = np.nan_to_num(y)
    # with h = 5 the 5-date span is one label, as the 1-date one: the same signal, left out
    assert sorted(r) == (["r1", "r20"] if horizon == 5 else ["r1", "r20", "r5"])
    for k in (1, 5, 20) if horizon != 5 else (1, 20):
        n = max(1, round(k / horizon))
        want = np.zeros_like(z)
        for d in range(60):
            want[d] = sum(
                z[d - horizon - j * horizon] for j in range(n) if d - horizon - j * horizon >= 0
            )
        np.testing.assert_allclose(r[f"r{k}"].numpy(), want, atol=1e-6)
