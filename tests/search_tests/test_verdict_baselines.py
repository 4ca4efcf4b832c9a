"""The verdict's fitted baselines are fitted for the metric the verdict compares on."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from data import DataConfig, Prepared, load_panel
from models.baselines import _moments, ridge_baseline
from search.evaluate.verdict import build_verdict


def _linear_panel(path, n_dates: int = 240, n_ids: int = 120, seed: int = 0):
    """A target linear in the same date's factors (plus noise): least squares is the best
    predictor there is, and ridge with a light penalty is it."""
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n_dates, n_ids, 4))
    y = 0.3 * (f[:, :, 0] - 0.6 * f[:, :, 1]) + rng.standard_normal((n_dates, n_ids))
    d, s = np.meshgrid(np.arange(n_dates), np.arange(n_ids), indexing="ij")
    days = np.datetime64("2020-01-01") + d.ravel()
    cols = {"date": days, "id": [f"S{i:03d}" for i in s.ravel()], "target": y.ravel()}
    cols |= {f"f{k}": f[:, :, k].ravel() for k in range(4)}
    pl.DataFrame(cols).write_parquet(path)
    cfg = DataConfig(
        path=str(path), id="id", target="target", features=("f*",), target_cs="rank",
        normalize="cs_rank",
    )  # fmt: skip
    return Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=1)


def _least_squares(data: Prepared, train: torch.Tensor):
    """The unpenalised least-squares fit on the training windows: a model with nothing
    over ridge."""
    from models.baselines import _linear

    n = len(train)
    sx, sy, xtx, xty = _moments(data, train)
    mx, my = sx / n, sy / n
    beta = torch.linalg.solve(xtx - n * torch.outer(mx, mx), xty - n * mx * my)
    return lambda e: _linear(data, e, mx, beta, my)


def test_an_mse_verdict_does_not_say_least_squares_beats_ridge(tmp_path) -> None:
    """The penalty was picked by validation rank IC whatever the verdict compared: on a
    linear signal the largest penalty won by a rank IC 1e-5 higher, which shrank ridge to
    the constant's MSE, and the verdict on MSE said a plain least-squares fit BEATS ridge
    by more than the noise."""
    data = _linear_panel(tmp_path / "linear.parquet")
    train, val, test = (data.ends(s, 1) for s in ("train", "val", "test"))
    S = data.n_securities
    ols = _least_squares(data, train)
    y = data.target[test // S, test % S].double()
    ols_mse = float(((ols(test).double() - y) ** 2).mean())
    ridge = ridge_baseline(data, train, val, select="mse")
    assert float(((ridge(test).double() - y) ** 2).mean()) < ols_mse + 2e-4
    v = build_verdict(data, ols, select="mse", tree=False)
    assert v["best_baseline"] == "ridge"
    assert not v["beats"], v["summary"]
    assert "BEATS" not in v["summary"]
    # on rank IC the choice is as before: ridge's ranking is least squares' ranking
    v = build_verdict(data, ols, select="rank_ic", tree=False)
    assert not v["beats"] and abs(v["margin"]) < 1e-3
