"""Every metric against an independent numpy / scipy computation, date by date."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from models.metrics import auc, evaluate, group_ranks


def _panel(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dates of 1, 3, 7 and 12 securities; ties in predictions and targets; weights."""
    rng = np.random.default_rng(seed)
    sizes = [7, 1, 12, 3, 9, 7]
    date = np.repeat(np.arange(len(sizes)) * 2, sizes)  # gaps in the date numbers
    n = len(date)
    y = rng.normal(size=n).round(1)  # rounding makes ties
    pred = (0.5 * y + rng.normal(size=n)).round(1)
    w = rng.uniform(0.1, 2.0, size=n)
    return pred, y, date, w


def _by_date(date: np.ndarray, min_count: int) -> list[np.ndarray]:
    return [np.flatnonzero(date == d) for d in np.unique(date) if (date == d).sum() >= min_count]


def _stats(v: list[float]) -> tuple[float, float, float]:
    a = np.array([x for x in v if np.isfinite(x)])
    return a.mean(), a.std(ddof=1) / math.sqrt(len(a)), a.mean() / a.std(ddof=1)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a)


def test_group_ranks_average_ties() -> None:
    x = torch.tensor([3.0, 1.0, 3.0, 2.0, 5.0, 5.0, 5.0])
    g = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    assert group_ranks(x, g, 2).tolist() == [3.5, 1.0, 3.5, 2.0, 2.0, 2.0, 2.0]


def test_panel_metrics_match_scipy() -> None:
    pred, y, date, w = _panel()
    m = {
        k: float(v)
        for k, v in evaluate(
            _t(pred), _t(y), _t(date), None, "regression", panel=True, periods_per_year=252
        ).items()
    }
    groups = _by_date(date, 5)
    assert m["dates"] == len(groups) == 4 and m["dates_skipped"] == 2
    ic = [stats.pearsonr(pred[i], y[i])[0] for i in groups]
    ric = [stats.spearmanr(pred[i], y[i])[0] for i in groups]
    for key, daily in (("ic", ic), ("rank_ic", ric)):
        mean, se, ir = _stats(daily)
        assert m[key] == pytest.approx(mean, abs=1e-12)
        assert m[f"{key}_se"] == pytest.approx(se, abs=1e-12)
        assert m[key.replace("ic", "icir")] == pytest.approx(ir, abs=1e-12)
    spreads = []
    for i in groups:
        r = stats.rankdata(pred[i])  # average ranks
        n = len(i)
        spreads.append(y[i][r > 0.8 * n].mean() - y[i][r <= 0.2 * n].mean())
    mean, se, ir = _stats(spreads)
    assert m["spread"] == pytest.approx(mean, abs=1e-12)
    assert m["sharpe"] == pytest.approx(ir * math.sqrt(252), abs=1e-9)
    assert m["mse"] == pytest.approx(np.mean((pred - y) ** 2), abs=1e-12)
    assert m["mse_skill"] == pytest.approx(1 - np.sum((pred - y) ** 2) / np.sum(y**2), abs=1e-12)
    nz = y != 0
    assert m["hit_rate"] == pytest.approx(np.mean(np.sign(pred[nz]) == np.sign(y[nz])), abs=1e-12)


def test_weighted_metrics_and_utility() -> None:
    pred, y, date, w = _panel(1)
    m = {
        k: float(v)
        for k, v in evaluate(_t(pred), _t(y), _t(date), _t(w), "regression", panel=True).items()
    }
    assert m["loss"] == pytest.approx(np.sum(w * (pred - y) ** 2) / w.sum(), abs=1e-12)
    assert m["r2_weighted"] == pytest.approx(1 - np.sum(w * (y - pred) ** 2) / np.sum(w * y**2))
    p = np.array([np.sum((w * y * (pred > 0))[date == d]) for d in np.unique(date)])
    t = p.sum() / np.sqrt(np.sum(p**2)) * np.sqrt(250 / len(p))
    assert m["utility"] == pytest.approx(min(max(t, 0), 6) * p.sum(), abs=1e-9)


def test_classification_metrics() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(40, 2))
    y = (rng.uniform(size=40) < 0.5).astype(np.float32)
    date = np.repeat(np.arange(4), 10)
    m = evaluate(_t(logits), _t(y), _t(date), None, "classification", panel=True)
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert float(m["accuracy"]) == pytest.approx(np.mean(logits.argmax(1) == y))
    ll = -np.mean(np.log(prob[np.arange(40), y.astype(int)]))
    assert float(m["log_loss"]) == pytest.approx(ll, abs=1e-9)
    # AUC = P(score of a positive > score of a negative), ties counted half
    pos, neg = prob[y == 1, 1], prob[y == 0, 1]
    ref = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    assert float(m["auc"]) == pytest.approx(ref, abs=1e-12)
    tied = auc(torch.tensor([0.5, 0.5, 0.5, 0.9]), torch.tensor([True, False, False, True]))
    assert float(tied) == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)


def test_single_series_metrics() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=30)
    pred = y + rng.normal(size=30)
    m = evaluate(_t(pred), _t(y), _t(np.arange(30)), None, "regression", panel=False)
    assert float(m["ic"]) == pytest.approx(stats.pearsonr(pred, y)[0])
    assert float(m["rank_ic"]) == pytest.approx(stats.spearmanr(pred, y)[0])
    pnl = np.sign(pred) * y
    assert float(m["sharpe"]) == pytest.approx(pnl.mean() / pnl.std(ddof=1) * math.sqrt(252))


def test_no_date_with_enough_securities_gives_nan_not_an_error() -> None:
    m = evaluate(torch.randn(4), torch.randn(4), torch.arange(4), None, "regression", panel=True)
    assert m["dates"].item() == 0 and m["dates_skipped"].item() == 4
    assert math.isnan(m["rank_ic"].item()) and math.isnan(m["sharpe"].item())


def test_a_prediction_constant_on_a_date_scores_zero_there() -> None:
    """A constant ranks nothing: on a date where the prediction is constant its IC, rank IC
    and spread are 0, not left out, so that two predictors' means cover the same dates and
    their difference is the mean of their paired daily difference (whose standard error the
    verdict compares it with). A date with a constant target stays undefined for all."""
    from models.luck import influence
    from models.metrics import mean_se

    g = torch.Generator().manual_seed(0)
    G, S = 40, 30
    date = torch.arange(G).repeat_interleave(S)
    y = torch.randn(G * S, generator=g)
    model = y + 3 * torch.randn(G * S, generator=g)
    base = y + 3 * torch.randn(G * S, generator=g)
    base[date < 10] = 0.0  # constant on 10 dates
    mb = evaluate(base, y, date, None, "regression", panel=True)
    kept = date >= 10
    rest = evaluate(base[kept], y[kept], date[kept], None, "regression", panel=True)
    for key in ("ic", "rank_ic", "spread"):
        assert float(mb[key]) == pytest.approx(float(rest[key]) * 30 / 40, abs=1e-12), key
    mm = evaluate(model, y, date, None, "regression", panel=True)
    va = influence("rank_ic", model, y, date, None, "regression", True)
    vb = influence("rank_ic", base, y, date, None, "regression", True)
    assert va is not None and vb is not None
    assert bool(torch.isfinite(va).all()) and bool(torch.isfinite(vb).all())
    assert float(vb[:10].abs().max()) == 0.0
    diff = va - vb
    assert float(mm["rank_ic"] - mb["rank_ic"]) == pytest.approx(float(diff.mean()), abs=1e-12)
    assert math.isfinite(float(mean_se(diff)))
    # a date whose target is constant (a market-wide halt) is scored for no one
    y2 = y.clone()
    y2[date == 0] = 0.0
    v = influence("rank_ic", model, y2, date, None, "regression", True)
    assert v is not None and bool(torch.isnan(v[0])) and bool(torch.isfinite(v[1:]).all())


def test_only_a_constant_prediction_scores_zero_and_only_against_the_target() -> None:
    """The 0 of a constant applies to a prediction scored against the target: between two
    predictions (models.portfolio's rank correlation with the tree) a constant side leaves
    the date undefined whichever side it is; and a prediction of two values whose ties fill
    both deciles is not a constant: its spread there stays undefined, not 0."""
    from models.metrics import daily_corr, group_index

    g = torch.Generator().manual_seed(1)
    date = torch.arange(4).repeat_interleave(10)
    a, b = torch.randn(40, generator=g), torch.randn(40, generator=g)
    a[date == 0] = 1.0
    inv, G = group_index(date)
    for x, y in ((a, b), (b, a)):
        r = daily_corr(x, y, inv, G)
        assert bool(torch.isnan(r[0])) and bool(torch.isfinite(r[1:]).all())
    assert float(daily_corr(a, b, inv, G, scored=True)[0]) == 0.0
    two = (torch.arange(40) % 2).double()  # half the names at each value, every date
    m = evaluate(two, b, date, None, "regression", panel=True)
    assert math.isnan(float(m["spread"])) and math.isfinite(float(m["ic"]))
