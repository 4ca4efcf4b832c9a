"""Per-date ranks, the rank blend, prediction correlation and the long-short portfolio,
each recomputed independently with pandas on a small panel."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from models.portfolio import (
    blend,
    decile_portfolio,
    per_date_rank,
    prediction_correlation,
    summary,
)

N_DATES, N_SEC = 30, 25


def _panel(seed: int = 0) -> pd.DataFrame:
    """30 dates x 25 securities, some rows missing, date 7 with 3 securities, ties in
    the predictions (rounded), a target that the prediction `a` partly knows."""
    rng = np.random.default_rng(seed)
    d, s = np.meshgrid(np.arange(N_DATES), np.arange(N_SEC), indexing="ij")
    df = pd.DataFrame({"date": d.ravel(), "sec": s.ravel()})
    df = df[rng.uniform(size=len(df)) > 0.15]
    df = df[(df.date != 7) | (df.sec < 3)].reset_index(drop=True)
    df["y"] = rng.normal(scale=0.02, size=len(df))
    df["a"] = (df.y * 50 + rng.normal(size=len(df))).round(1)
    df["b"] = (df.a + rng.normal(scale=2.0, size=len(df))).round(0)
    return df


def _t(df: pd.DataFrame, col: str) -> torch.Tensor:
    return torch.as_tensor(df[col].to_numpy().copy())


def _scaled_rank(df: pd.DataFrame, col: str) -> pd.Series:
    r = df.groupby("date")[col].rank(method="average")
    n = df.groupby("date")[col].transform("size")
    return ((r - 1) / (n - 1)).where(n > 1, 0.5)


def test_per_date_rank_and_blend_match_pandas() -> None:
    df = _panel()
    got = per_date_rank(_t(df, "a"), _t(df, "date")).numpy()
    np.testing.assert_allclose(got, _scaled_rank(df, "a").to_numpy(), atol=1e-12)
    assert got.min() == 0.0 and got.max() == 1.0
    want = 0.5 * _scaled_rank(df, "a") + 0.5 * _scaled_rank(df, "b")
    got = blend(_t(df, "a"), _t(df, "b"), date=_t(df, "date")).numpy()
    np.testing.assert_allclose(got, want.to_numpy(), atol=1e-12)
    want = 0.25 * _scaled_rank(df, "a") + 0.75 * _scaled_rank(df, "b")
    got = blend(_t(df, "a"), _t(df, "b"), date=_t(df, "date"), weights=[1, 3]).numpy()
    np.testing.assert_allclose(got, want.to_numpy(), atol=1e-12)


def test_prediction_correlation_matches_pandas() -> None:
    df = _panel()
    daily = [g.a.corr(g.b, method="spearman") for _, g in df.groupby("date") if len(g) >= 5]
    got = float(prediction_correlation(_t(df, "a"), _t(df, "b"), _t(df, "date")))
    assert got == pytest.approx(float(np.mean(daily)), abs=1e-12)
    same = prediction_correlation(_t(df, "a"), _t(df, "a"), _t(df, "date"))
    assert float(same) == pytest.approx(1.0)


def _pandas_portfolio(df: pd.DataFrame, pred: str, h: int, q: float, cost_bps: float) -> dict:
    """The module's convention written out date by date."""
    lo, hi = df.date.min(), df.date.max()
    prev: dict[int, float] = {}
    gross, net, turns = [], [], []
    for f in range(lo, hi + 1, h):
        g = df[df.date == f]
        w: dict[int, float] = {}
        if len(g) >= 5:
            r = g[pred].rank(method="average")
            k = max(1, math.floor(len(g) * q))
            top, bot = g[r > len(g) - k], g[r <= k]
            if len(top) and len(bot):
                w = {**{s: 1 / len(top) for s in top.sec}, **{s: -1 / len(bot) for s in bot.sec}}
        ret = sum(w[s] * y for s, y in zip(g.sec, g.y, strict=True) if s in w)
        turn = sum(abs(w.get(s, 0.0) - prev.get(s, 0.0)) for s in set(w) | set(prev))
        gross.append(ret)
        turns.append(turn)
        net.append(ret - cost_bps / 1e4 * turn)
        prev = w
    ann = math.sqrt(252 / h)
    return {
        "gross": gross,
        "net": net,
        "turnover": np.mean(turns),
        "sharpe": np.mean(gross) / np.std(gross, ddof=1) * ann,
        "sharpe_after_cost": np.mean(net) / np.std(net, ddof=1) * ann,
    }


@pytest.mark.parametrize(("h", "q"), [(1, 0.1), (3, 0.2)])
def test_decile_portfolio_matches_pandas(h: int, q: float) -> None:
    df = _panel(1)
    want = _pandas_portfolio(df, "a", h, q, cost_bps=10.0)
    got = decile_portfolio(
        _t(df, "a"),
        _t(df, "y"),
        _t(df, "date"),
        _t(df, "sec"),
        N_DATES,
        N_SEC,
        cost_bps=10.0,
        horizon=h,
        quantile=q,
    )
    assert got["periods"] == len(want["gross"]) == len(range(0, N_DATES, h))
    np.testing.assert_allclose(got["returns"].numpy(), want["gross"], atol=1e-12)
    np.testing.assert_allclose(got["returns_after_cost"].numpy(), want["net"], atol=1e-12)
    assert got["cumulative"] == pytest.approx(sum(want["gross"]), abs=1e-12)
    assert got["cumulative_after_cost"] == pytest.approx(sum(want["net"]), abs=1e-12)
    for k in ("turnover", "sharpe", "sharpe_after_cost"):
        assert got[k] == pytest.approx(want[k], rel=1e-9), k
    assert got["sharpe"] > got["sharpe_after_cost"]  # a prediction that knows y earns
    assert got["sharpe"] > 1.0
    assert 7 % h or float(got["returns"][7 // h]) == 0.0  # the 3-security date is flat
    s = summary(got)
    assert "returns" not in s and s["horizon"] == h and s["cost_bps"] == 10.0


def test_decile_portfolio_full_replacement_turnover() -> None:
    """Two securities per leg that swap every date: each rebalance after the first sells
    and buys both legs (turnover 4); the first builds them from cash (2)."""
    date = torch.arange(3).repeat_interleave(10)
    sec = torch.arange(10).repeat(3)
    pred = torch.where(date % 2 == 0, sec, 9 - sec).double()
    y = torch.zeros(30, dtype=torch.float64)
    got = decile_portfolio(pred, y, date, sec, 3, 10, quantile=0.2)
    assert got["returns_after_cost"].tolist() == pytest.approx([-2e-3, -4e-3, -4e-3])
    assert got["turnover"] == pytest.approx(10 / 3)
