"""Selection that survives: reproducible trials, objectives, seeds and folds, no pruning
after the last epoch, the budget in the spec, confirm, multi-objective, the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import polars as pl
import pytest
import torch
from scipy import stats

from search.cli import main
from tests.conftest import SAMPLE, write_panel
from tests.search_tests.helpers import load, run_cli, write_study

S = optuna.trial.TrialState
FIXED_T = """
[space]
time_steps = 5
num_layers = 1
hidden_dim = {{ low = 4, high = 8 }}
head_dim = 0
dropout = 0.0
batch_size = 256
epochs = 3
optimizer = "adam"
lr = {{ low = 1e-3, high = 3e-2, log = true }}
"""


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/sel.db"


def test_train_reproduces_its_trial(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_study(tmp_path, "rep", extra='[search]\nseeds = 2\npruner = "none"')
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "2") == 0  # no --seed
    study = load(url, "rep")
    assert all(isinstance(t.user_attrs["seed"], int) for t in study.trials)  # stored
    capsys.readouterr()
    out = tmp_path / "m.pt"
    args = ["train", "--study-name", "rep", "--storage", url, "--out", str(out), "--no-tree"]
    args.append("--exact")
    assert main(args) == 0
    ckpt = torch.load(out, weights_only=True)
    rep = ckpt["reproduced"]
    assert rep["same_seed"] and rep["match"]
    assert rep["retrained_value"][0] == pytest.approx(study.best_value, rel=1e-5, abs=1e-7)
    assert len(ckpt["models"][0]["states"]) == 2  # both seeds kept, averaged by predict
    assert "reproduced the trial's value" in capsys.readouterr().err
    # another seed is said to be another seed
    assert main([*args, "--seed", "7"]) == 0
    assert "--seed 7: another seed than the trial's, so not a reproduction" in (
        capsys.readouterr().err
    )


def test_no_pruning_after_the_last_epoch(tmp_path: Path, url: str) -> None:
    cfg = write_study(tmp_path, "last", extra='[search]\npruner = "hyperband"')
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "14", "--seed", "5") == 0
    trials = load(url, "last").trials
    assert S.PRUNED in {t.state for t in trials}
    for t in trials:
        ran = len(t.intermediate_values)
        if t.state == S.PRUNED:
            assert ran < t.params["epochs"]
        if ran == t.params["epochs"]:
            assert t.state == S.COMPLETE


def test_budget_is_part_of_the_spec(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_study(tmp_path, "bud")
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1") == 0
    cfg.write_text(
        cfg.read_text().replace("max_windows_per_epoch = 256", "max_windows_per_epoch = 512")
    )
    capsys.readouterr()
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1") == 2
    err = capsys.readouterr().err
    assert "[budget] max_windows_per_epoch: study has 256, this run has 512" in err
    assert len(load(url, "bud").trials) == 1


def test_walk_forward_folds_and_seeds_with_pruning(tmp_path: Path, url: str) -> None:
    extra = '[search]\npruner = "median"\nseeds = 2\n'
    cfg = write_study(tmp_path, "wf", extra=extra, space=FIXED_T)
    text = cfg.read_text().replace('target_cs = "zscore"', 'target_cs = "zscore"\nfolds = 3')
    cfg.write_text(text)
    args = ("--n-trials", "9", "--seed", "1", "--device", "cpu")  # the CPU budget
    assert run_cli("--config", str(cfg), "--storage", url, *args) == 0
    trials = load(url, "wf").trials
    assert {S.COMPLETE, S.PRUNED} <= {t.state for t in trials}
    for t in trials:
        assert t.user_attrs["folds"] == 3 and t.user_attrs["seeds"] == 2
        # one report per epoch (the CPU's report_every, 8,192, is over an epoch of 256
        # windows): the step is the windows trained
        epochs = range(1, t.user_attrs["epochs_run"] + 1)
        assert sorted(t.intermediate_values) == [256 * e for e in epochs]
        if t.state == S.COMPLETE:
            members = t.user_attrs["member_values"]  # fold-major: 3 folds x 2 seeds
            assert len(members) == 6 and len(t.user_attrs["fold_values"]) == 3
            assert t.value == pytest.approx(np.mean(members))
            assert t.user_attrs["fold_values"][2] == pytest.approx(np.mean(members[4:]))
            assert t.user_attrs["seed_std"] >= 0


def test_multi_objective_exports_the_pareto_front(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_study(tmp_path, "mo")
    argv = ["--config", str(cfg), "--storage", url, "--n-trials", "4", "--seed", "2"]
    assert run_cli(*argv, "--objective", "rank_ic,val_loss") == 0
    assert "several objectives: no pruning" in capsys.readouterr().err
    study = load(url, "mo")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["rank_ic", "val_loss"]
    assert all(t.state == S.COMPLETE for t in study.trials)
    out = tmp_path / "front.json"
    assert main(["export", "--study-name", "mo", "--storage", url, "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    front = {t.number for t in study.best_trials}
    assert {r["trial_number"] for r in rec["pareto_front"]} == front
    assert all(len(r["values"]) == 2 for r in rec["pareto_front"])
    model = tmp_path / "mo.pt"
    train = ["train", "--study-name", "mo", "--storage", url, "--out", str(model), "--no-tree"]
    capsys.readouterr()
    assert main(train) == 2
    assert "choose a trial of its Pareto front with --trial N" in capsys.readouterr().err
    n = min(front)
    assert main([*train, "--trial", str(n)]) == 0
    assert torch.load(model, weights_only=True)["trial_number"] == n
    sub = tmp_path / "sub.csv"
    assert main(["predict", "--model", str(model), "--out", str(sub)]) == 0
    # another objective on resume is refused
    assert run_cli(*argv, "--objective", "rank_ic") == 2
    assert "objective: study has 'rank_ic,val_loss'" in capsys.readouterr().err


def test_confirm_names_a_winner_that_export_and_train_use(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_study(tmp_path, "cf", extra='[search]\npruner = "none"')
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "4", "--seed", "3") == 0
    capsys.readouterr()
    argv = ["confirm", "--study-name", "cf", "--storage", url, "--top", "2", "--seeds", "2"]
    assert main([*argv, "--no-tree"]) == 0
    err = capsys.readouterr().err
    study = load(url, "cf")
    rec = study.user_attrs["confirm"]
    top2 = sorted(study.trials, key=lambda t: t.value, reverse=True)[:2]
    assert set(rec["trials"]) == {str(t.number) for t in top2}
    for row in rec["trials"].values():
        assert len(row["values"]) == 2
        assert row["mean"] == pytest.approx(np.mean(row["values"]))
        assert row["std"] == pytest.approx(np.std(row["values"], ddof=1))
    means = {int(n): r["mean"] for n, r in rec["trials"].items()}
    assert rec["winner"] == max(means, key=lambda n: means[n])
    assert f"winner: trial {rec['winner']}" in err and "best simple baseline" in err
    assert study.user_attrs["verdict"]["source"] == "confirm"
    out = tmp_path / "b.json"
    assert main(["export", "--study-name", "cf", "--storage", url, "--out", str(out)]) == 0
    best = json.loads(out.read_text())
    assert best["trial_number"] == rec["winner"] and best["selected_by"] == "confirm"
    model = tmp_path / "cf.pt"
    assert (
        main(["train", "--study-name", "cf", "--storage", url, "--out", str(model), "--no-tree"])
        == 0
    )
    assert torch.load(model, weights_only=True)["trial_number"] == rec["winner"]
    # the winner's confirmed seeds, averaged in one checkpoint: the value confirm measured
    seeds = tmp_path / "seeds.pt"
    args = ["train", "--study-name", "cf", "--storage", url, "--out", str(seeds), "--no-tree"]
    capsys.readouterr()
    assert main([*args, "--exact", "--seeds", "2", "--seed", str(rec["seed"])]) == 0
    assert "not a reproduction" in capsys.readouterr().err
    ck = torch.load(seeds, weights_only=True)
    assert len(ck["models"]) == 1 and len(ck["models"][0]["states"]) == 2
    assert not ck["reproduced"]["same_seeds"] and not ck["reproduced"]["match"]
    winner = rec["trials"][str(rec["winner"])]
    assert ck["reproduced"]["retrained_value"][0] == pytest.approx(winner["mean"], abs=1e-6)
    # an ensemble of the two confirmed configurations, their seeds averaged
    ens = tmp_path / "ens.pt"
    args = ["train", "--study-name", "cf", "--storage", url, "--out", str(ens), "--no-tree"]
    capsys.readouterr()
    assert main([*args, "--ensemble", "5"]) == 0
    err = capsys.readouterr().err
    assert "--ensemble 5: only 2 trial(s) to average" in err
    first = f"its first member, trial {ck_first(ens)}"
    assert first in err  # the value checked is the first member's, not the ensemble's
    ck = torch.load(ens, weights_only=True)
    assert len(ck["models"]) == 2 and sorted(ck["trial_numbers"]) == sorted(means)
    assert main(["predict", "--model", str(ens), "--out", str(tmp_path / "e.csv")]) == 0


def ck_first(path: Path) -> int:
    return int(torch.load(path, weights_only=True)["trial_numbers"][0])


def test_verdict_numbers_recomputed_independently(tmp_path: Path, url: str) -> None:
    cfg = write_study(tmp_path, "vd", space=FIXED_T, extra='[search]\npruner = "none"')
    # raw feature values in the panel (a missing return is 0), as recomputed below
    cfg.write_text(
        cfg.read_text().replace(
            'target_cs = "zscore"', 'target_cs = "zscore"\nnormalize = "robust"'
        )
    )
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1", "--seed", "4") == 0
    model = tmp_path / "vd.pt"
    assert (
        main(["train", "--study-name", "vd", "--storage", url, "--out", str(model), "--no-tree"])
        == 0
    )
    v = torch.load(model, weights_only=True)["verdict"]
    preds = tmp_path / "test.csv"
    assert main(["predict", "--model", str(model), "--out", str(preds), "--dates", "test"]) == 0
    df = pl.read_csv(preds).filter(pl.col("target").is_not_nan()).to_pandas()

    def rank_ic(frame: pd.DataFrame, col: str) -> float:
        daily = [
            stats.spearmanr(g[col], g["target"])[0] for _, g in frame.groupby("date") if len(g) >= 5
        ]
        return float(np.mean(daily))

    assert v["test"]["model"]["rank_ic"] == pytest.approx(rank_ic(df, "prediction"), abs=1e-6)
    # 20-day momentum from the raw prices, on the dense calendar of the file
    raw = pl.read_parquet(SAMPLE).to_pandas()
    close = raw.pivot(index="date", columns="symbol", values="close").sort_index()
    ret20 = np.log(close) - np.log(close.shift(20))
    name = next(n for n in v["test"] if n.startswith("momentum_20"))
    sign = -1.0 if "sign flipped" in name else 1.0
    df["date"] = pd.to_datetime(df["date"])
    df["mom"] = [
        sign * ret20.at[d, s] if np.isfinite(ret20.at[d, s]) else 0.0
        for d, s in zip(df["date"], df["symbol"], strict=True)
    ]
    assert v["test"][name]["rank_ic"] == pytest.approx(rank_ic(df, "mom"), abs=1e-6)
    assert v["test"]["zero"]["rank_ic"] == 0.0
    assert v["test"]["zero"]["mse"] == pytest.approx(float(np.mean(df["target"] ** 2)), rel=1e-5)


def test_bad_objectives_are_refused_before_any_trial(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_study(tmp_path, "bad")
    assert run_cli("--config", str(cfg), "--storage", url, "--objective", "rank_icc") == 2
    assert "did you mean 'rank_ic'" in capsys.readouterr().err
    assert run_cli("--config", str(cfg), "--storage", url, "--objective", "auc") == 2
    assert "'auc' does not apply to [data] task = 'regression'" in capsys.readouterr().err
    small = write_panel(tmp_path / "small.parquet", n_dates=80, n_ids=3)
    argv = ["--config", str(cfg), "--storage", url, "--data", str(small), "--id", "id"]
    assert run_cli(*argv, "--target", "target", "--features", "f*") == 2
    assert "use --objective val_loss" in capsys.readouterr().err
    assert not Path(url.removeprefix("sqlite:///")).exists() or not optuna.get_all_study_names(url)


def test_confirm_at_the_final_budget_includes_the_queued_configuration(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = (
        '[search]\npruner = "none"\n[[search.enqueue]]\nhidden_dim = 4\nlr = 0.001\n'
        "[final]\nepochs = 2\nseeds = 3\nmax_windows_per_epoch = 512\n"
    )
    cfg = write_study(tmp_path, "cff", space=FIXED_T, extra=extra)
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "4", "--seed", "5") == 0
    study = load(url, "cff")
    queued = study.trials[0]
    assert (queued.params["hidden_dim"], queued.params["lr"]) == (4, 0.001)
    best = max(study.trials, key=lambda t: t.value)
    capsys.readouterr()
    argv = ["confirm", "--study-name", "cff", "--storage", url, "--top", "1", "--final"]
    model = tmp_path / "confirmed.pt"
    assert main([*argv, "--no-tree", "--out", str(model)]) == 0
    err = capsys.readouterr().err
    rec = load(url, "cff").user_attrs["confirm"]
    assert f"wrote {model}" in err and rec["model"] == str(model)
    # the best trial, and the queued one beside it whatever its rank; one seed each
    assert set(rec["trials"]) == {str(best.number), str(queued.number)}
    assert rec["budget"] == "final" and rec["seeds"] == 1
    assert "seed(s) at the final fit's budget" in err
    assert all(len(r["values"]) == 1 for r in rec["trials"].values())
    # each value is the final fit's of that trial with confirm's seed (one network)
    for n, row in rec["trials"].items():
        out = tmp_path / f"t{n}.pt"
        train = ["train", "--study-name", "cff", "--storage", url, "--out", str(out)]
        assert (
            main([*train, "--no-tree", "--trial", n, "--seeds", "1", "--seed", str(rec["seed"])])
            == 0
        )
        ck = torch.load(out, weights_only=True)
        assert ck["fit"] == "final" and ck["final"]["epochs"] == 2
        assert ck["reproduced"]["retrained_value"][0] == pytest.approx(row["mean"], abs=1e-6)
        if int(n) == rec["winner"]:
            refit = ck
    # confirm saved the winner's own network: the same weights and verdict as that refit,
    # and predict reads it
    saved = torch.load(model, weights_only=True)
    assert saved["fit"] == "final" and saved["trial_numbers"] == [rec["winner"]]
    assert saved["reproduced"]["match"] is False and saved["same_data_as_study"] is True
    (a,) = saved["models"][0]["states"]
    (b,) = refit["models"][0]["states"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert saved["metrics"]["test"]["rank_ic"] == pytest.approx(
        refit["metrics"]["test"]["rank_ic"], abs=1e-9
    )
    assert main(["predict", "--model", str(model), "--out", str(tmp_path / "p.csv")]) == 0
    assert len(pl.read_csv(tmp_path / "p.csv")) > 0
    # a model is saved only at the final fit's budget
    with pytest.raises(SystemExit) as stop:
        main(["confirm", "--study-name", "cff", "--storage", url, "--out", str(model)])
    assert stop.value.code == 2
    assert "--out: a model is saved only at the final fit's budget" in capsys.readouterr().err
