"""The verdict's noise: the paired standard error against a constant baseline, with
overlapping forward returns, on the objective's own metric, on one series."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from data import DataConfig, Prepared, load_panel
from models.luck import deflated_sharpe
from models.metrics import daily_corr, daily_rank_ic, group_index, mean_se
from search.evaluate.verdict import _paired_se, build_verdict
from tests.conftest import SAMPLE


def _prepared(horizon: int = 1, path: str = str(SAMPLE), target_cs: str = "rank") -> Prepared:
    cfg = DataConfig(path=path, target_cs=target_cs, horizon=horizon)
    return Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=5)


def _noise(data: Prepared, ends: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(ends), generator=g, dtype=torch.float64).float()


def test_mean_se_is_the_plain_standard_error_at_lag_0_and_grows_with_overlap() -> None:
    rng = np.random.default_rng(0)
    e = torch.as_tensor(rng.standard_normal(20_004))
    assert float(mean_se(e, 0)) == pytest.approx(float(e.std() / math.sqrt(len(e))), rel=1e-12)
    overlapping = e.unfold(0, 5, 1).sum(-1)  # 5-date sums of one noise: lag-4 overlap
    naive, hh = float(mean_se(overlapping, 0)), float(mean_se(overlapping, 4))
    assert hh / naive == pytest.approx(math.sqrt(5), rel=0.1)
    # negative autocorrelation never makes it smaller than the plain error
    alternating = e[:1000] * torch.tensor([1.0, -1.0]).repeat(500) + torch.arange(1000) % 2
    assert float(mean_se(alternating, 3)) == pytest.approx(float(mean_se(alternating, 0)))
    with_nan = torch.cat([e[:10], torch.tensor([math.nan]), e[10:20]])
    assert float(mean_se(with_nan, 0)) == pytest.approx(float(e[:20].std() / math.sqrt(20)))


def test_a_skill_less_model_against_the_constant_baseline_is_not_called_a_winner() -> None:
    """'zero' ranks nothing: the paired noise is the model's own daily rank IC's, not None
    (which left the seed spread alone to judge by)."""
    data = _prepared()
    ends = data.ends("test", 5)
    S = data.n_securities
    outputs = {"model": _noise(data, ends), "zero": torch.zeros(len(ends))}
    se = _paired_se(data, "rank_ic", outputs, ends, "model", "zero")
    d = ends // S
    own = daily_rank_ic(outputs["model"], data.target[d, ends % S], d)
    assert se == pytest.approx(float(mean_se(own)), rel=1e-9)
    assert _paired_se(data, "rank_icir", outputs, ends, "model", "zero") is not None


def test_the_paired_error_counts_the_overlap_of_h_date_returns() -> None:
    """Two skill-less signals that persist over dates, scored on 5-date returns: consecutive
    dates' rank ICs share 4 dates of returns, and the error counts it."""
    data = _prepared(horizon=5)
    ends = data.ends("test", 5)
    S = data.n_securities
    d, s, y = ends // S, ends % S, data.target[ends // S, ends % S]
    g = torch.Generator().manual_seed(1)
    outputs = {"a": torch.randn(S, generator=g)[s], "b": torch.randn(S, generator=g)[s]}
    diff = daily_rank_ic(outputs["a"], y, d) - daily_rank_ic(outputs["b"], y, d)
    se = _paired_se(data, "rank_ic", outputs, ends, "a", "b")
    assert se == pytest.approx(float(mean_se(diff, 4)), rel=1e-9)
    assert se > 1.3 * float(mean_se(diff, 0))


def test_the_ic_objective_is_judged_on_the_daily_pearson_ic() -> None:
    data = _prepared()
    ends = data.ends("test", 5)
    S = data.n_securities
    d, y = ends // S, data.target[ends // S, ends % S]
    a = data.values[d, ends % S, 1]
    outputs = {"a": a, "b": _noise(data, ends, 3)}
    inv, G = group_index(d)
    ok = torch.bincount(inv, minlength=G) >= 5
    pearson = daily_corr(a, y, inv, G) - daily_corr(outputs["b"], y, inv, G)
    spearman = daily_rank_ic(a, y, d) - daily_rank_ic(outputs["b"], y, d)
    se = _paired_se(data, "ic", outputs, ends, "a", "b")
    assert se == pytest.approx(float(mean_se(pearson[ok])), rel=1e-9)
    assert se != pytest.approx(float(mean_se(spearman)), rel=1e-6)


def test_one_series_gets_a_paired_error_and_the_verdict_judges_it(tmp_path) -> None:
    frame = pl.read_parquet(SAMPLE)
    first = frame["symbol"].unique().sort()[0]
    path = tmp_path / "one.parquet"
    frame.filter(pl.col("symbol") == first).write_parquet(path)
    data = _prepared(path=str(path), target_cs="none")
    assert data.n_securities == 1
    ends = data.ends("test", 5)
    outputs = {"a": _noise(data, ends, 4), "b": _noise(data, ends, 5)}
    for metric in ("rank_ic", "ic", "sharpe", "mse"):
        se = _paired_se(data, metric, outputs, ends, "a", "b")
        assert se is not None and se > 0, metric
    # a correlation over n dates has a standard error near 1 / sqrt(n); the difference of
    # two independent ones near sqrt(2 / n)
    n = len(ends)
    assert _paired_se(data, "rank_ic", outputs, ends, "a", "b") == pytest.approx(
        math.sqrt(2 / n), rel=0.35
    )
    v = build_verdict(data, lambda e: _noise(data, e, 6), tree=False)
    assert v["paired_se"] is not None and "not judged" not in v["summary"]


def test_the_deflated_sharpe_counts_overlapping_dates_as_fewer() -> None:
    rng = np.random.default_rng(1)
    values = 0.05 + rng.standard_normal(500) * 0.5
    sharpes = rng.standard_normal(20) * 0.03
    one, five = deflated_sharpe(values, sharpes), deflated_sharpe(values, sharpes, overlap=5)
    assert five["dsr"] < one["dsr"] and five["dates"] == 500 and five["overlap"] == 5
    assert "overlap" not in one


def test_the_noise_of_a_pooled_loss_weights_dates_by_their_rows() -> None:
    """MSE is pooled over rows: with dates of 5 to 200 securities, the paired error of two
    predictors' MSE is what resampling whole dates gives."""
    from models.luck import influence

    g = torch.Generator().manual_seed(0)
    counts = torch.randint(5, 200, (200,), generator=g)
    date = torch.repeat_interleave(torch.arange(200), counts)
    y = torch.randn(len(date), generator=g, dtype=torch.float64)
    a = y + torch.randn(len(date), generator=g, dtype=torch.float64)
    b = y + 1.1 * torch.randn(len(date), generator=g, dtype=torch.float64)
    ia, ib = (influence("mse", p, y, date, None, "regression", True) for p in (a, b))
    assert ia is not None and ib is not None
    se = float(mean_se(ia - ib))
    ea, eb, rows_of = (
        ((a - y) ** 2).numpy(),
        ((b - y) ** 2).numpy(),
        np.split(np.arange(len(date)), np.cumsum(counts.numpy())[:-1]),
    )
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(400):
        rows = np.concatenate([rows_of[k] for k in rng.integers(0, 200, 200)])
        boot.append(ea[rows].mean() - eb[rows].mean())
    assert se == pytest.approx(float(np.std(boot)), rel=0.2)


def test_a_loss_objective_is_judged_on_mse_and_a_return_sized_mse_is_readable(tmp_path) -> None:
    """A study that minimises val_loss (a regression's MSE) or maximises mse_skill is judged
    on MSE, not on a rank IC it never looked at (n/a on a panel of a few securities); an
    MSE of a raw return target (~1e-4) prints in significant digits, not as 0.0000."""
    from search.evaluate.retrain import _verdict_metric
    from search.evaluate.verdict import format_verdict

    assert (
        _verdict_metric("loss") == _verdict_metric("mse_skill") == _verdict_metric("mse") == "mse"
    )
    assert _verdict_metric("rank_icir") == "rank_icir" and _verdict_metric("spread") == "rank_ic"
    # a classifier's loss is its cross-entropy, which the verdict does not score: rank IC
    assert _verdict_metric("loss", "classification") == "rank_ic"
    frame = pl.read_parquet(SAMPLE)
    first = frame["symbol"].unique().sort()[0]
    path = tmp_path / "one.parquet"
    frame.filter(pl.col("symbol") == first).write_parquet(path)
    data = _prepared(path=str(path), target_cs="none")
    v = build_verdict(data, lambda e: 0.05 + 0.0 * _noise(data, e, 6), select="mse", tree=False)
    text = format_verdict(v)
    model_row = next(line for line in text.splitlines() if line.startswith("model"))
    assert "0.0000" not in model_row.split()[1] and "e-0" in model_row.split()[1]
    zero_row = next(line for line in text.splitlines() if line.startswith("zero"))
    assert "e-0" in zero_row.split()[1 if "*" not in zero_row else 2]
    # one notation per column: every MSE of the table in significant digits
    header = text.splitlines()[0]
    at = header.index("MSE") + 3  # the column's cells end where its header does
    for line in text.splitlines()[1:8]:
        if line.strip():
            assert "e-0" in line[at - 10 : at], line
    from search.evaluate.verdict import _f

    assert _f(-0.0) == "+0.0000" and _f(-0.01234) == "-0.0123" and _f(None) == "n/a"
    assert _f(3e-5, "mse") == "+3.000e-05" and _f(3e-5) == "+0.0000"
    # a constant 0.05 on a ~1e-2 daily return: far worse than zero, and the verdict says so
    assert v["margin"] < 0 and "BELOW" in v["summary"] and "one seed" not in v["summary"]
