"""`export` after `confirm`: the top-level value and seed spread are the confirmed ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.cli import main
from tests.conftest import write_panel
from tests.search_tests.helpers import load, run_cli
from tests.search_tests.test_predict_columns import TINY_STUDY, tiny_study


def test_export_after_confirm_reports_the_confirmed_mean_and_spread(tmp_path: Path) -> None:
    data = write_panel(tmp_path / "panel.parquet", n_dates=40, n_ids=3)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        TINY_STUDY.format(name="ec", data=data, time_steps=3).replace("dropout = 0.0\n", "")
    )
    url = f"sqlite:///{tmp_path}/e.db"
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "3") == 0
    confirm = ["confirm", "--study-name", "ec", "--storage", url, "--top", "2", "--seeds", "2"]
    assert main([*confirm, "--no-tree"]) == 0
    out = tmp_path / "best.json"
    assert main(["export", "--study-name", "ec", "--storage", url, "--out", str(out)]) == 0
    best = json.loads(out.read_text())
    rec = load(url, "ec").user_attrs["confirm"]
    row = rec["trials"][str(rec["winner"])]
    assert best["selected_by"] == "confirm" and best["trial_number"] == rec["winner"]
    assert best["value"] == pytest.approx(row["mean"])
    assert best["seed_std"] == pytest.approx(row["std"])
    assert best["search_value"] == pytest.approx(row["search_value"])
    assert best["confirm"]["seeds"] == 2


def test_confirm_says_when_the_study_has_fewer_trials_than_top(tmp_path: Path, capsys) -> None:
    data = write_panel(tmp_path / "panel.parquet", n_dates=40, n_ids=3)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_STUDY.format(name="one", data=data, time_steps=3))
    url = f"sqlite:///{tmp_path}/e.db"
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1") == 0
    capsys.readouterr()
    confirm = ["confirm", "--study-name", "one", "--storage", url, "--top", "3", "--seeds", "1"]
    assert main([*confirm, "--no-tree", "-q"]) == 0
    err = capsys.readouterr().err
    only = "--top 3: only 1 complete trial(s) to confirm; all of them confirmed\n"
    assert only in err
    assert err.index(only) < err.index("-> confirmed"), err  # said before the refits
    assert "confirmed 1 trial x 1 seed(s) in " in err


def test_the_trials_csv_holds_dict_and_list_attrs_as_json(tmp_path: Path) -> None:
    import optuna
    import polars as pl

    from search.evaluate.export import export_trials

    study = optuna.create_study()
    daily = {"metric": "rank_ic", "ranges": [[3, 5]], "values": [0.1, None]}
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 0.01},
            distributions={"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1)},
            value=0.1,
            user_attrs={"daily_values": daily, "member_values": [0.1, float("nan")]},
        )
    )
    out = tmp_path / "trials.csv"
    assert export_trials(study, out) == 1
    row = pl.read_csv(out).row(0, named=True)
    assert json.loads(row["user_attrs_daily_values"]) == daily
    assert json.loads(row["user_attrs_member_values"]) == [0.1, None]


def test_export_leaves_out_the_weight_metrics_of_a_study_without_a_weight_column() -> None:
    """r2_weighted and utility exist with a [data] weight column (README); without one they
    stay out of the export, unless the objective is one of them."""
    import optuna

    from search.evaluate.export import best_record
    from search.evaluate.report import best_trial_rows

    def exported(weight: str | None, objective: str) -> dict[str, object]:
        study = optuna.create_study(direction="maximize")
        study.set_user_attr(
            "config", {"data": {"weight": weight}, "study": {"objective": objective}}
        )
        metrics = {"val_rank_ic": 0.1, "val_mse_skill": -0.2, "val_r2_weighted": -0.2}
        study.add_trial(
            optuna.trial.create_trial(value=0.1, user_attrs={**metrics, "val_utility": 0.03})
        )
        in_report = {row[0] for row in best_trial_rows(study)[0] if row[0].startswith("val_")}
        assert in_report == set(best_record(study)["metrics"])  # the report shows the same
        return best_record(study)["metrics"]

    assert set(exported(None, "rank_ic")) == {"val_rank_ic", "val_mse_skill"}
    assert set(exported("w", "rank_ic")) == {
        "val_rank_ic", "val_mse_skill", "val_r2_weighted", "val_utility",
    }  # fmt: skip
    assert set(exported(None, "utility")) == {"val_rank_ic", "val_mse_skill", "val_utility"}


@pytest.mark.parametrize(
    ("weight", "objective", "kept"),
    [
        (False, "val_loss", set()),
        (True, "val_loss", {"val_r2_weighted", "val_utility"}),
        (False, "utility", {"val_utility"}),
    ],
)
def test_trials_record_the_weight_metrics_only_with_a_weight_column(
    tmp_path: Path, weight: bool, objective: str, kept: set[str]
) -> None:
    """A trial's user attrs (export --trials, the dashboard) hold r2_weighted and utility
    where the data has a weight column, or an objective names them: not otherwise."""
    import polars as pl

    data = write_panel(tmp_path / "panel.parquet", n_dates=40, n_ids=3)
    if weight:
        pl.read_parquet(data).with_columns(w=pl.lit(2.0)).write_parquet(data)
    text = TINY_STUDY.format(name="wm", data=data, time_steps=3)
    text = text.replace('objective = "val_loss"', f'objective = "{objective}"')
    cfg = tmp_path / "wm.toml"
    cfg.write_text(text.replace('id = "id"\n', 'id = "id"\nweight = "w"\n') if weight else text)
    url = f"sqlite:///{tmp_path}/w.db"
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1") == 0
    attrs = load(url, "wm").trials[0].user_attrs
    assert "val_mse_skill" in attrs and "val_rank_ic" in attrs
    assert {k for k in ("val_r2_weighted", "val_utility") if k in attrs} == kept


def test_confirm_final_keeps_the_tree_for_predict(tmp_path: Path) -> None:
    """`confirm --final` saves its winner as the model, as `train` does: with the verdict's
    tree, whose predictions and blend `predict` writes."""
    import polars as pl
    import torch

    url = tiny_study(tmp_path, "cff", n_trials=2, n_dates=60, n_ids=8)
    model = tmp_path / "m.pt"
    confirm = ["confirm", "--study-name", "cff", "--storage", url, "--top", "2", "--final"]
    assert main([*confirm, "--out", str(model)]) == 0
    assert torch.load(model, weights_only=True)["tree"]["name"] == "lgbm"
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(model), "--out", str(out), "--dates", "all"]) == 0
    df = pl.read_csv(out)
    assert {"prediction", "lgbm", "blend"} <= set(df.columns)
    assert df["blend"].is_between(0.0, 1.0).all()
