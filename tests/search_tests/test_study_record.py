"""What a study keeps for a reader: study user attrs, objective names, the dashboard note,
the per-trial attrs, the log file beside the study, and exports that read back."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna_dashboard import get_note

from search.cli import main
from tests.search_tests.helpers import load, run_cli, write_study


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("record")
    url = f"sqlite:///{folder}/s.db"
    cfg = write_study(folder, "rec")
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "6", "--seed", "2") == 0
    return folder, url


def test_study_attrs_and_note_say_what_the_study_is(made: tuple[Path, str]) -> None:
    _, url = made
    study = load(url, "rec")
    attrs = study.user_attrs
    data = attrs["data"]
    assert data["file"].endswith("sp500_sample.parquet") and len(data["fingerprint"]) == 24
    assert data["fingerprint"] == attrs["spec"]["data_fingerprint"]
    assert (data["securities"], data["dates"]) == (40, 1259)
    assert data["features"][:2] == ["ret_1", "ret_5"]
    assert set(data["split"]) == {"train", "val", "test"}
    for seg in data["split"].values():
        assert seg["first"] <= seg["last"] and seg["dates"] > 0
        assert set(seg["windows"]) == {"3", "6"} and seg["windows"]["3"] >= seg["windows"]["6"]
    assert data["split"]["train"]["last"] < data["split"]["val"]["first"]
    assert {"optuna", "torch", "python"} <= set(attrs["versions"])
    assert attrs["device"] == "cpu"
    assert attrs["config"]["study"]["name"] == "rec"
    assert study.metric_names == ["rank_ic"]
    note = get_note(study)
    assert note.startswith("## rec")
    for text in (
        "sp500_sample.parquet",
        "40 securities",
        "ret_1",
        "| hidden_dim | 4 .. 8 |",
        "optuna-run export --study-name rec",
        "optuna-run train --study-name rec",
        "optuna-run predict --model studies/rec-model.pt",
    ):
        assert text in note, text


def test_every_trial_keeps_its_record(made: tuple[Path, str]) -> None:
    _, url = made
    for t in load(url, "rec").trials:
        assert {"epochs_run", "best_epoch", "train_seconds", "device", "worker"} <= set(
            t.user_attrs
        )
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert {"val_mse", "val_ic"} <= set(t.user_attrs)


def test_trial_lines_go_to_a_log_beside_the_study(made: tuple[Path, str]) -> None:
    folder, _ = made
    lines = (folder / "rec.log").read_text().splitlines()
    trials = [
        ln for ln in lines if re.match(r"^\S+ \[\d+\] trial +\d+ (COMPLETE|PRUNED|FAIL) ", ln)
    ]
    assert len(trials) == 6
    assert trials[0][:2] == "20" and "trial    0 " in trials[0]  # time-stamped
    assert all(ln[:2] == "20" for ln in lines)


def test_export_trials_round_trips(made: tuple[Path, str], tmp_path: Path) -> None:
    _, url = made
    study = load(url, "rec")
    old = os.umask(0o022)
    try:
        for suffix in (".csv", ".parquet"):
            out = tmp_path / f"trials{suffix}"
            best = tmp_path / "best.json"
            args = ["export", "--study-name", "rec", "--storage", url, "--out", str(best)]
            assert main([*args, "--trials", str(out)]) == 0
            assert (out.stat().st_mode & 0o777) == 0o644  # the umask, not 0600
            assert (best.stat().st_mode & 0o777) == 0o644
            df = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
            assert list(df["number"]) == [t.number for t in study.trials]
            assert list(df["state"]) == [t.state.name for t in study.trials]
            for name in ("time_steps", "hidden_dim", "lr", "epochs"):
                assert list(df[f"params_{name}"]) == pytest.approx(
                    [t.params[name] for t in study.trials]
                )
            done = df[df["state"] == "COMPLETE"]
            trials = {t.number: t for t in study.trials}
            for _, row in done.iterrows():
                t = trials[int(row["number"])]
                assert row["value_rank_ic"] == pytest.approx(t.value)  # named objective
                assert row["user_attrs_val_mse"] == pytest.approx(t.user_attrs["val_mse"])
                assert row["user_attrs_best_epoch"] == t.user_attrs["best_epoch"]
            assert json.loads(best.read_text())["trial_number"] == study.best_trial.number
    finally:
        os.umask(old)
