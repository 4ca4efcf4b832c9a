"""PBO and the deflated Sharpe ratio against cases worked by hand, a pure-noise search and
a search with one genuinely good trial; per-date values against the metrics they average."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import torch

from data import DataConfig, Prepared, load_panel
from models.ensemble import group
from models.lstm import RecurrentNet
from models.luck import (
    daily_values,
    deflated_sharpe,
    effective_trials,
    expected_max_sharpe,
    luck_summary,
    pbo,
    sharpe,
    trial_daily,
)
from models.metrics import evaluate
from models.train import Member, TrainParams, fit, to_floats, validate
from tests.conftest import write_panel

# 4 dates x 3 trials; blocks of one date each, C(4, 2) = 6 halves
HAND = np.array(
    [
        [5.0, 1.0, 2.0],
        [0.0, 3.0, 2.0],
        [3.0, 0.0, 1.5],
        [1.0, 2.0, 5.0],
    ]
)


def test_pbo_by_hand() -> None:
    """In-sample sums (equal block sizes: the order of the means) -> winner -> its
    out-of-sample rank among 3 (ties averaged) -> w = rank / 4 -> logit:
      IS {0,1}: 5, 4, 4     -> t0; OOS {2,3}: 4, 2, 6.5 -> rank 2,   w .5,   logit 0
      IS {0,2}: 8, 1, 3.5   -> t0; OOS {1,3}: 1, 5, 7   -> rank 1,   w .25,  logit ln(1/3)
      IS {0,3}: 6, 3, 7     -> t2; OOS {1,2}: 3, 3, 3.5 -> rank 3,   w .75,  logit ln 3
      IS {1,2}: 3, 3, 3.5   -> t2; OOS {0,3}: 6, 3, 7   -> rank 3,   w .75,  logit ln 3
      IS {1,3}: 1, 5, 7     -> t2; OOS {0,2}: 8, 1, 3.5 -> rank 2,   w .5,   logit 0
      IS {2,3}: 4, 2, 6.5   -> t2; OOS {0,1}: 5, 4, 4   -> rank 1.5, w .375, logit ln .6
    four of six logits <= 0."""
    r = pbo(HAND, n_blocks=4)
    assert r["pbo"] == pytest.approx(4 / 6)
    assert r["combinations"] == 6 and r["blocks"] == 4 and r["trials"] == 3
    logits = sorted([0.0, math.log(1 / 3), math.log(3), math.log(3), 0.0, math.log(0.6)])
    assert r["logit_median"] == pytest.approx((logits[2] + logits[3]) / 2)
    # the winner's in-sample and out-of-sample means, averaged over the six halves
    assert r["is_winner_mean"] == pytest.approx(np.mean([5, 8, 7, 3.5, 7, 6.5]) / 2)
    assert r["oos_winner_mean"] == pytest.approx(np.mean([4, 1, 3.5, 7, 3.5, 4]) / 2)
    # minimising the same numbers: the in-sample winners flip
    assert pbo(-HAND, n_blocks=4, sign=-1.0)["pbo"] == pytest.approx(4 / 6)


def test_deflated_sharpe_by_hand() -> None:
    """Winner's values 0.2, 0, 0.1, 0.3, -0.1: mean 0.1, deviations .1 -.1 0 .2 -.2,
    sum of squares 0.1, sample std sqrt(0.025), SR = 0.1 / sqrt(0.025) = sqrt(0.4);
    m2 = 0.02, m3 = 0 (skew 0), m4 = 0.0034 / 5 = 0.00068, kurtosis 0.00068 / 0.02^2 = 1.7.
    Trials' Sharpe ratios sqrt(0.4), 0.2, -0.2, 0: sum of squares 0.48, mean sqrt(0.4)/4,
    V = (0.48 - 4 * 0.4 / 16) / 3 = 0.38 / 3."""
    values = np.array([0.2, 0.0, 0.1, 0.3, -0.1])
    sr = math.sqrt(0.4)
    z = NormalDist().inv_cdf
    g = 0.5772156649015329
    sr0 = math.sqrt(0.38 / 3) * ((1 - g) * z(1 - 1 / 4) + g * z(1 - 1 / (4 * math.e)))
    dsr = NormalDist().cdf((sr - sr0) * math.sqrt(4) / math.sqrt(1 - 0 * sr + 0.7 / 4 * 0.4))
    r = deflated_sharpe(values, np.array([sr, 0.2, -0.2, 0.0]))
    assert r["sharpe"] == pytest.approx(sr)
    assert r["skew"] == pytest.approx(0.0, abs=1e-12) and r["kurtosis"] == pytest.approx(1.7)
    assert r["sharpe_var"] == pytest.approx(0.38 / 3)
    assert r["sharpe0"] == pytest.approx(sr0) and r["dsr"] == pytest.approx(dsr)
    assert expected_max_sharpe(1.0, 1) == 0.0  # one trial: nothing to deflate
    assert sharpe(values) == pytest.approx(sr)


def _noise(seed: int, T: int = 240, N: int = 50) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.1, size=(T, N))


def test_pure_noise_search_is_luck() -> None:
    """Per-date rank ICs of 50 skill-less trials: the in-sample winner lands anywhere out of
    sample (PBO about 0.5 on average over searches; one search's PBO varies by about 0.17)
    and its Sharpe is what the best of 50 shows by chance (DSR not significant)."""
    pbos = []
    for seed in range(20):
        r = luck_summary(_noise(seed), "rank_ic", n_blocks=8)
        pbos.append(r["pbo"]["pbo"])
        assert r["dsr"]["dsr"] < 0.95
    assert 0.35 < np.mean(pbos) < 0.65


def test_one_good_trial_is_not_luck() -> None:
    m = _noise(0)
    m[:, 17] += 0.05  # a daily rank IC of 0.05 over 0.1 of noise: per-date Sharpe 0.5
    r = luck_summary(m, "rank_ic", n_blocks=16)
    assert r["winner"] == 17 and r["pbo"]["pbo"] < 0.05 and r["pbo"]["combinations"] == 12870
    assert r["dsr"]["dsr"] > 0.95
    # a metric where 0 is not "no skill" (a loss) gets no DSR; minimising flips the winner
    loss = luck_summary(-m, "loss", n_blocks=8)
    assert loss["winner"] == 17 and loss["dsr"] is None and loss["pbo"]["pbo"] < 0.05


def test_effective_trials() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=(200, 1))
    clones = base + 0.01 * rng.normal(size=(200, 30))
    assert effective_trials(clones) < 1.1
    assert effective_trials(rng.normal(size=(200, 30))) > 28
    r = luck_summary(clones + 0.02, "rank_ic", n_blocks=8, effective=True)
    assert r["dsr_effective"]["trials"] < 1.1
    assert r["dsr_effective"]["dsr"] > r["dsr"]["dsr"]  # fewer trials, less deflation


def test_trials_with_missing_dates_are_cleaned() -> None:
    m = _noise(3, T=40, N=5)
    m[5, :] = np.nan  # a date no trial scored
    m[:, 2] = np.nan  # a trial that never scored (constant predictions)
    r = pbo(m, n_blocks=8)
    assert r["trials"] == 4 and r["dates"] == 39
    assert luck_summary(m, "rank_ic", winner=2)["dsr"] is None


def _small_panel(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """6 dates of 8 securities (equal counts: the mean of the daily means is the mean)."""
    rng = np.random.default_rng(seed)
    date = torch.arange(6).repeat_interleave(8) * 3  # gaps in the date numbers
    y = torch.as_tensor(rng.normal(size=48))
    pred = 0.5 * y + torch.as_tensor(rng.normal(size=48))
    return pred, y, date


@pytest.mark.parametrize(
    ("key", "how"),
    [("rank_ic", "mean"), ("ic", "mean"), ("spread", "mean"), ("loss", "mean")]
    + [("hit_rate", "mean"), ("rank_icir", "ir"), ("sharpe", "sharpe")],
)
def test_daily_values_average_to_the_metric(key: str, how: str) -> None:
    pred, y, date = _small_panel()
    m = evaluate(pred, y, date, None, "regression", panel=True, periods_per_year=50.0)
    got = daily_values(key, pred, y, date, None, "regression", panel=True)
    assert got is not None
    dates, v = got
    assert dates.tolist() == [0, 3, 6, 9, 12, 15]
    want = {"mean": v.mean(), "ir": v.mean() / v.std(), "sharpe": v.mean() / v.std() * 50**0.5}
    assert float(m[key]) == pytest.approx(float(want[how]), rel=1e-9)


def test_daily_values_of_other_metrics() -> None:
    pred, y, date = _small_panel(1)
    w = torch.linspace(0.5, 2.0, 48, dtype=torch.float64)
    for key, per_date in (
        ("mse_skill", lambda p, t, ww: 1 - (ww * (p - t) ** 2).sum() / (ww * t**2).sum()),
        ("utility", lambda p, t, ww: (ww * t * (p > 0)).sum()),
        ("mse", lambda p, t, ww: (ww * (p - t) ** 2).sum() / ww.sum()),
    ):
        got = daily_values(key, pred, y, date, w, "regression", panel=True)
        assert got is not None
        want = [
            float(per_date(pred[i : i + 8], y[i : i + 8], w[i : i + 8])) for i in range(0, 48, 8)
        ]
        np.testing.assert_allclose(got[1].numpy(), want, rtol=1e-12)
    assert daily_values("auc", pred, y, date, None, "regression", panel=True) is None
    assert daily_values("rank_ic", pred, y, date, None, "regression", panel=False) is None
    few = daily_values("rank_ic", pred[:12], y[:12], date[:12], None, "regression", panel=True)
    assert few is not None and math.isnan(float(few[1][1]))  # 4 securities < min_count 5


def test_trial_daily_matches_the_validation_metric(tmp_path: Path) -> None:
    """A real panel and network: the per-date rank ICs of the best epoch average to the
    validation rank IC `fit` scored; two seeds' values are their mean; JSON-ready."""
    path = write_panel(tmp_path / "p.parquet", n_dates=120, n_ids=8, n_features=3)
    cfg = DataConfig(path=str(path), id="id", target="target", features=("f*",))
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"))
    p = TrainParams(time_steps=4, epochs=2, batch_size=64, lr=1e-2, seed=0)
    members = [Member(-1, 0), Member(-1, 1)]
    nets: list[torch.nn.Module] = []
    for mb in members:
        torch.manual_seed(mb.seed)
        nets.append(RecurrentNet(3, 1, hidden_dim=4))
    model = group(nets, grouped=False)
    r = fit(model, data, p, members=members, keep_best=True)
    assert r.best_state is not None
    model.load_state_dict(r.best_state)
    per_member = to_floats(validate(model, data, "val", p, members))
    d = trial_daily(model, data, p, members, "rank_ic")
    assert d is not None and d["metric"] == "rank_ic"
    ((lo, hi),) = d["ranges"]
    assert (lo, hi) == (data.split.val.start, data.split.val.stop) and len(d["values"]) == hi - lo
    vals = [v for v in d["values"] if v is not None]
    assert np.mean(vals) == pytest.approx(np.mean([m["rank_ic"] for m in per_member]), abs=1e-5)
    assert all(v is None or v == float(f"{v:.6g}") for v in d["values"])
