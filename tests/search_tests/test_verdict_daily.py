"""The numbers the report's verdict figures draw, recomputed here independently: each test
date's rank IC (scipy), its mean and standard error, and the running sum over the dates."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from data import DataConfig, Prepared, load_panel
from search.evaluate.figures import cumulative, rank_ic_rows
from search.evaluate.verdict import build_verdict
from tests.conftest import SAMPLE


def test_daily_rank_ic_its_standard_error_and_running_sum() -> None:
    cfg = DataConfig(path=str(SAMPLE), target_cs="zscore")
    panel = load_panel(cfg)
    data = Prepared(panel, cfg, torch.device("cpu"), eval_time_steps=5)
    S = data.n_securities

    def feature(e: torch.Tensor) -> torch.Tensor:  # the model: the 5-day return as it is
        return data.values[e // S, e % S, 1]

    v = build_verdict(data, feature, tree=False)
    ends = data.ends("test", 5).numpy()
    frame = pd.DataFrame(
        {"d": ends // S, "p": panel.values[ends // S, ends % S, 1], "y": panel.target[ends // S, ends % S]}
    )  # fmt: skip
    want = {
        d: stats.spearmanr(g["p"], g["y"])[0] if len(g) >= 5 else math.nan
        for d, g in frame.groupby("d")
    }
    daily = v["daily"]
    assert daily["dates"] == [panel.date_str(d) for d in sorted(want)]
    got = [math.nan if x is None else x for x in daily["rank_ic"]["model"]]
    assert got == pytest.approx([want[d] for d in sorted(want)], abs=1e-6, nan_ok=True)
    assert set(daily["rank_ic"]) == set(v["test"]) - {"zero"}  # a constant ranks nothing
    # the mean and its standard error over the dates with a value
    x = np.array([w for w in want.values() if np.isfinite(w)])
    model = v["test"]["model"]
    assert model["rank_ic"] == pytest.approx(x.mean(), abs=1e-9)
    assert model["rank_ic_se"] == pytest.approx(x.std(ddof=1) / math.sqrt(len(x)), abs=1e-9)
    # the chart's rows: the model first with its standard error, the best baseline named
    rows = rank_ic_rows(v)
    assert rows[0][0] == "model" and rows[0][2:] == (model["rank_ic"], model["rank_ic_se"])
    assert f"{v['best_baseline']} (best on validation)" in [r[0] for r in rows]
    assert len(rows) == len(v["test"])
    # the running sum: a date without a value adds nothing
    run = list(itertools.accumulate(0.0 if math.isnan(w) else w for w in got))
    assert cumulative(daily["rank_ic"]["model"]) == pytest.approx(run)
    assert cumulative([0.5, None, -0.25, float("nan"), 1.0]) == [0.5, 0.5, 0.25, 0.25, 1.25]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_model_against_the_tree_with_its_paired_noise(sign: float) -> None:
    pytest.importorskip("lightgbm")
    cfg = DataConfig(path=str(SAMPLE), target_cs="rank")
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=5)
    S = data.n_securities

    def model(e: torch.Tensor) -> torch.Tensor:  # the 1-day return, as it is or reversed
        return sign * data.values[e // S, e % S, 0]

    v = build_verdict(data, model, tree=True)
    tree = v["tree"]
    assert tree["name"] == "lgbm"
    assert tree["margin"] == pytest.approx(
        v["test"]["model"]["rank_ic"] - v["test"]["lgbm"]["rank_ic"]
    )
    # the paired standard error from the stored daily values (6 decimals), by numpy
    daily = v["daily"]["rank_ic"]
    pairs = [
        (a, b) for a, b in zip(daily["model"], daily["lgbm"], strict=True) if None not in (a, b)
    ]
    diff = np.array([a - b for a, b in pairs])
    assert tree["paired_se"] == pytest.approx(diff.std(ddof=1) / math.sqrt(len(diff)), abs=1e-6)
    noise = 2 * tree["paired_se"]
    word = "ABOVE" if tree["margin"] > noise else "BELOW" if tree["margin"] < -noise else "level"
    assert tree["beats"] == (word == "ABOVE")
    assert (
        f"Beside the lgbm tree ({v['test']['lgbm']['rank_ic']:+.4f}): {tree['margin']:+.4f}"
        in v["summary"]
    )
    assert f"2 x paired standard error {noise:.4f}): {word}" in v["summary"]
    # against the best simple baseline: BEATS, BELOW or level, by its own noise
    m, bn = v["margin"], max(v["seed_std"] or 0.0, 2 * v["paired_se"])
    said = "BEATS it" if m > bn else "is BELOW it" if m < -bn else "does NOT beat it"
    assert f"the model {said} by more than the noise." in v["summary"], v["summary"]


def test_a_model_below_the_best_baseline_is_called_below() -> None:
    """A model that ranks every date backwards (minus the target) is BELOW the best simple
    baseline by more than the noise, not merely 'does not beat it'."""
    cfg = DataConfig(path=str(SAMPLE), target_cs="rank")
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=5)
    S = data.n_securities
    v = build_verdict(data, lambda e: -data.target[e // S, e % S], tree=False)
    assert v["margin"] < -2 * v["paired_se"] and not v["beats"]
    assert v["summary"].endswith("the model is BELOW it by more than the noise."), v["summary"]


def test_no_noise_measured_judges_nothing() -> None:
    """No per-date noise (a metric with no per-date form): a margin either way is not judged,
    whatever the seed spread."""
    from search.evaluate.verdict import _summary

    for margin, seeds in itertools.product((-0.01, 0.01), (None, 0.0001)):
        line = _summary("model", "mse", 0.01, "ridge", 0.01, margin, seeds, None, False, 0.0)
        assert line.endswith(
            "not judged (the metric has no per-date form to measure the test dates' noise by)."
        ), line
