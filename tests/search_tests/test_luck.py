"""Every complete trial keeps its per-date validation values; the study's PBO and deflated
Sharpe come from them (a real study through the CLI on the bundled sample)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from search.cli import main
from search.study.luck import daily_matrix, format_luck, study_luck
from tests.search_tests.helpers import TINY_SPACE, load, run_cli, write_study

S = optuna.trial.TrialState
# the tiny space with every trial's time steps and epochs fixed (equal dates per fold)
FIXED_EPOCHS = TINY_SPACE.replace("{{ low = 3, high = 6 }}", "4").replace(
    "{{ low = 2, high = 9 }}", "2"
)


def test_trials_keep_per_date_values_and_the_study_its_luck(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    extra = '[search]\nseeds = 2\npruner = "none"\n'
    cfg = write_study(tmp_path, "luck", extra=extra, space=FIXED_EPOCHS)
    text = cfg.read_text().replace('target_cs = "zscore"', 'target_cs = "zscore"\nfolds = 3')
    cfg.write_text(
        text.replace("max_windows_per_epoch = 256", "max_windows_per_epoch = 256\nval_dates = 5")
    )
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "4", "--seed", "2") == 0
    study = load(url, "luck")
    done = [t for t in study.trials if t.state == S.COMPLETE]
    assert len(done) == 4
    member_seeds = [t.user_attrs["seed"] + j for t in done for j in range(2)]
    assert len(set(member_seeds)) == 8  # a seeded study: no two trials share a member's seed
    for t in done:
        d = t.user_attrs["daily_values"]
        assert d["metric"] == "rank_ic" and len(d["ranges"]) == 3  # one range per fold
        assert all(a[1] == b[0] for a, b in zip(d["ranges"], d["ranges"][1:], strict=False))
        assert len(d["values"]) == d["ranges"][-1][1] - d["ranges"][0][0]
        # every validation date (not the 5 of each epoch's report), members averaged:
        # with equal dates per fold, their mean is the trial's value
        vals = np.array([np.nan if v is None else v for v in d["values"]]).reshape(3, -1)
        assert np.isfinite(vals).sum() > 3 * 5
        assert np.nanmean(np.nanmean(vals, 1)) == pytest.approx(t.value, abs=1e-5)
    m, numbers, metric, _ = daily_matrix(study.trials)
    assert m.shape[1] == 4 and numbers == [t.number for t in done] and metric == "rank_ic"
    luck = study_luck(study, n_blocks=8)
    assert luck["winner"] == study.best_trial.number
    assert 0.0 <= luck["pbo"]["pbo"] <= 1.0 and luck["pbo"]["trials"] == 4
    assert 0.0 <= luck["dsr"]["dsr"] <= 1.0 and luck["dsr_effective"]["trials"] <= 4
    text = format_luck(luck)
    assert "probability of backtest overfitting" in text and "deflated Sharpe" in text
    # the per-date values stay out of the exported metrics; the trials table still writes
    out, table = tmp_path / "best.json", tmp_path / "trials.parquet"
    argv = ["export", "--study-name", "luck", "--storage", url, "--out", str(out)]
    assert main([*argv, "--trials", str(table)]) == 0
    assert "daily_values" not in out.read_text()
    assert len(pd.read_parquet(table)) == 4
    # trials pruned on validation were tried and rejected: the deflation counts them too
    for _ in range(20):
        study.add_trial(optuna.trial.create_trial(state=S.PRUNED, intermediate_values={0: 0.0}))
    more = study_luck(study, n_blocks=8)
    assert more["dsr"]["trials"] == 24 and more["dsr"]["complete"] == 4
    assert more["dsr"]["sharpe0"] > luck["dsr"]["sharpe0"]
    assert more["dsr"]["dsr"] <= luck["dsr"]["dsr"] and more["pbo"]["trials"] == 4
    assert luck["dsr_effective"]["trials"] < more["dsr_effective"]["trials"] <= 24
    assert "skill-less trials, every trial tried: 4 with per-date values, the rest pruned" in (
        format_luck(more)
    )


def test_a_study_without_per_date_values_says_so(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    luck = study_luck(study)
    assert "pbo" not in luck and "the 3 complete trials keep no per-date values" in luck["note"]
    assert format_luck(luck).startswith("luck: none: the 3 complete trials")
    one = optuna.create_study(direction="maximize")
    one.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert study_luck(one)["note"] == "needs per-date values of two complete trials, has 0"


def test_next_questions_on_the_sample() -> None:
    """The baselines of the bundled sample on its test dates: ridge stands in for the
    model, each figure recomputed with pandas from the same predictions."""
    import torch

    from data import DataConfig, Prepared, load_panel
    from models.baselines import baselines
    from search.evaluate.verdict import format_next_questions, next_questions
    from tests.conftest import SAMPLE

    cfg = DataConfig(path=str(SAMPLE), target_cs="zscore")
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=5)
    ends = {seg: data.ends(seg, 5) for seg in ("train", "val", "test")}
    fns = baselines(data, ends["train"], ends["val"], tree=False)
    e = ends["test"]
    outputs = {"model": fns["ridge"](e), **{n: f(e) for n, f in fns.items()}}
    q = next_questions(data, outputs, e, "model", "reversal_1", cost_bps=10.0)
    S = data.n_securities
    df = pd.DataFrame(
        {
            "date": (e // S).numpy(),
            "y": data.target[e // S, e % S].double().numpy(),
            "m": outputs["model"].double().numpy(),
            "b": outputs["reversal_1"].double().numpy(),
        }
    )
    g = df.groupby("date")
    corr = g.apply(lambda x: x.m.corr(x.b, method="spearman")).mean()
    assert q["partner"] == "reversal_1" and q["correlation"] == pytest.approx(corr, abs=1e-9)
    n = g.m.transform("size")
    mixed = ((g.m.rank() - 1) / (n - 1) + (g.b.rank() - 1) / (n - 1)) / 2
    df["blend"] = mixed
    ric = df.groupby("date").apply(lambda x: x.blend.corr(x.y, method="spearman"))
    ric_b = g.apply(lambda x: x.b.corr(x.y, method="spearman"))
    assert q["rank_ic"]["blend"] == pytest.approx(ric.mean(), abs=1e-9)
    assert q["blend_margin"] == pytest.approx((ric - ric_b).mean(), abs=1e-9)
    assert q["blend_paired_se"] == pytest.approx((ric - ric_b).std() / len(ric) ** 0.5, rel=1e-6)
    for name in ("model", "reversal_1"):
        p = q["portfolios"][name]
        assert p["horizon"] == cfg.horizon and p["cost_bps"] == 10.0
        assert p["sharpe_after_cost"] < p["sharpe"] and p["turnover"] > 0
    assert "transformed target" in q["note"]  # zscored: not returns
    doubled = next_questions(data, outputs, e, "model", "reversal_1", fwd_return=2 * data.target)
    twice, once = doubled["portfolios"]["model"], q["portfolios"]["model"]
    assert twice["cumulative"] == pytest.approx(2 * once["cumulative"])
    assert twice["sharpe"] == pytest.approx(once["sharpe"]) and "note" not in doubled
    text = format_next_questions(q)
    assert "rank correlation of model with reversal_1" in text
    assert text.count("long-short decile portfolio") == 2


def test_the_verdicts_portfolios_earn_the_raw_forward_return(tmp_path: Path) -> None:
    """A per-date transformed target keeps its untransformed return beside it (the panel's
    target_raw: the close-to-close return over the horizon), and the verdict's portfolios
    earn that, not the transformed values."""
    import numpy as np
    import polars as pl
    import torch

    from data import DataConfig, Prepared, load_panel
    from search.evaluate.verdict import build_verdict
    from tests.conftest import SAMPLE

    cfg = DataConfig(path=str(SAMPLE), target_cs="rank")
    panel = load_panel(cfg)
    assert panel.target_raw is not None
    df = pl.read_parquet(SAMPLE).sort("date")
    sym = str(panel.ids[0])
    close = df.filter(pl.col("symbol") == sym)["close"].to_numpy()
    want = close[1:] / close[:-1] - 1.0  # horizon 1, a security that traded every day
    got = panel.target_raw[: len(want), 0]
    ok = np.isfinite(got)
    assert ok.sum() > 100 and np.allclose(got[ok], want[ok], rtol=1e-5, atol=1e-7)
    assert load_panel(DataConfig(path=str(SAMPLE), target_cs="none")).target_raw is None
    data = Prepared(panel, cfg, torch.device("cpu"), eval_time_steps=5)
    v = build_verdict(
        data, lambda e: data.values[e // data.n_securities, e % data.n_securities, 0], tree=False
    )
    assert v["next"]["portfolios"] and "note" not in v["next"]


def test_a_portfolio_that_held_nothing_says_so_not_zeros(tmp_path: Path) -> None:
    """On 3 securities (under the 5 a date needs) the decile portfolio holds nothing: the
    verdict says so instead of a cumulative +0.0000 at turnover 0.00 and a Sharpe of n/a."""
    import polars as pl
    import torch

    from data import DataConfig, Prepared, load_panel
    from search.evaluate.verdict import build_verdict, format_next_questions
    from tests.conftest import SAMPLE

    frame = pl.read_parquet(SAMPLE)
    three = frame["symbol"].unique().sort()[:3].to_list()
    path = tmp_path / "three.parquet"
    frame.filter(pl.col("symbol").is_in(three)).write_parquet(path)
    cfg = DataConfig(path=str(path), target_cs="none", target_scale=100.0)
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=5)
    S = data.n_securities
    v = build_verdict(data, lambda e: data.values[e // S, e % S, 0], select="mse", tree=False)
    text = format_next_questions(v["next"])
    assert "long-short decile portfolio of model: none held (no test date has 5 securities" in text
    assert "cumulative +0.0000" not in text
    # no per-date rank on 3 securities: the correlation line's n/a figures said once
    first = text.splitlines()[0]
    assert first.endswith("n/a (no test date has the 5 securities a per-date rank needs)")
