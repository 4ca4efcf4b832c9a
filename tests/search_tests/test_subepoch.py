"""Pruning on work done: `[budget] report_every` reports inside epochs, the step and the
pruner's resource are the windows trained; and two trials at once on one CPU device."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch

from data import DataConfig, Prepared, load_panel
from search.config.schema import build_config
from search.study.pruners import epoch_range, make_pruner
from tests.conftest import SAMPLE
from tests.search_tests.helpers import TINY_SPACE, load, run_cli, write_study
from tests.search_tests.studyrun import (
    assert_numbers_unique,
    finish,
    start_cli,
    states,
    unique_name,
)

S = optuna.trial.TrialState

# the tiny space with batches of 32 (8 an epoch), 3 epochs and a wider lr range
SPACE = (
    TINY_SPACE.replace("batch_size = 256", "batch_size = 32")
    .replace("epochs = {{ low = 2, high = 9 }}", "epochs = 3")
    .replace("lr = {{ low = 1e-3,", "lr = {{ low = 1e-4,")
)


def sub_epoch_study(folder: Path, name: str, pruner: str = "successive_halving") -> Path:
    return write_study(
        folder,
        name,
        extra=f'report_every = 64\n[search]\nsampler = "random"\npruner = "{pruner}"',
        space=SPACE,
    )


def test_reports_inside_epochs_and_prunes_on_windows(tmp_path: Path) -> None:
    """256 windows an epoch in batches of 32, a report every 64 windows: steps are windows
    trained (64, 128, 192, then 256 at the epoch's end, ...); a weak trial can be stopped
    after 64 windows, a quarter of an epoch; the record counts the windows it trained."""
    url = f"sqlite:///{tmp_path}/s.db"
    cfg = sub_epoch_study(tmp_path, "sub")
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "10", "--seed", "1") == 0
    trials = load(url, "sub").trials
    assert {t.state for t in trials} <= {S.COMPLETE, S.PRUNED}
    full = [64, 128, 192, 256, 320, 384, 448, 512, 576, 640, 704, 768]
    for t in trials:
        steps = sorted(t.intermediate_values)
        assert steps == full[: len(steps)], t.number
        assert t.user_attrs["windows_trained"] == steps[-1]  # one seed, one fold
        assert t.user_attrs["epochs_run"] == steps[-1] // 256
        assert t.user_attrs["epochs_trained"] == steps[-1] / 256  # a quarter epoch at a time
        if t.state == S.COMPLETE:
            assert steps == full
            best = t.user_attrs["best_epoch"]  # chosen among the epochs' ends only
            ends = {e: t.intermediate_values[256 * e] for e in (1, 2, 3)}
            assert ends[best] == max(ends.values())
            assert t.user_attrs["val_rank_ic"] == pytest.approx(t.value)
    pruned = [t for t in trials if t.state == S.PRUNED]
    assert any(max(t.intermediate_values) % 256 for t in pruned), "no trial pruned mid-epoch"
    assert any(max(t.intermediate_values) == 64 for t in pruned)


def test_pruner_resource_is_windows(tmp_path: Path) -> None:
    """Hyperband's resource with report_every: from report_every windows (or an epoch of
    the longest windows, if fewer: every trial meets the first cut in its first epoch) to
    the most an epoch trains (shortest windows, smallest fold, capped) times the epochs."""
    cfg = build_config(sub_epoch_study(tmp_path, "hb", pruner="hyperband"), cpu=False)
    data = Prepared(load_panel(cfg.data), cfg.data, torch.device("cpu"))
    assert epoch_range(cfg, data) == (256, 256)  # the cap: the sample has thousands
    hb = make_pruner(cfg, epoch_range(cfg, data))
    assert isinstance(hb, optuna.pruners.HyperbandPruner)
    assert (hb._min_resource, hb._max_resource) == (64, 3 * 256)
    with pytest.raises(ValueError, match=r"\[budget\] report_every"):
        make_pruner(cfg)
    rare = replace(cfg, budget=replace(cfg.budget, report_every=10**6))
    hb = make_pruner(rare, (1000, 2000))
    assert (hb._min_resource, hb._max_resource) == (1000, 3 * 2000)  # type: ignore[attr-defined]
    uncapped = DataConfig(path=str(SAMPLE), target_cs="zscore")
    whole = Prepared(load_panel(uncapped), uncapped, data.device)
    no_cap = replace(cfg, budget=replace(cfg.budget, max_windows_per_epoch=0))
    assert epoch_range(no_cap, whole) == (whole.count("train", 6), whole.count("train", 3))


def test_two_trials_per_device_on_cpu(tmp_path: Path) -> None:
    """`--workers 2` on one CPU device with reports inside epochs: both processes train
    trials, every trial ends COMPLETE or PRUNED, and a second invocation asking for 40
    more stops at the study's --max-trials."""
    name = unique_name("two")
    cfg = sub_epoch_study(tmp_path, name, pruner="hyperband")
    url = f"sqlite:///{tmp_path / 'two.db'}"
    base = ["--config", str(cfg), "--storage", url, "--seed", "0", "--workers", "2"]
    base += ["--device", "cpu"]
    rc, _, err = finish(start_cli([*base, "--n-trials", "8"], tmp_path))
    assert rc == 0, err
    study = load(url, name)
    assert len(study.trials) == 8 and {t.state for t in study.trials} <= {S.COMPLETE, S.PRUNED}
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # 4 trials each
    assert all(t.user_attrs["device"] == "cpu" for t in study.trials)
    rc, _, err = finish(start_cli([*base, "--n-trials", "40", "--max-trials", "14"], tmp_path))
    assert rc == 0, err
    counts = states(url, name)
    assert sum(counts.values()) == 14 and set(counts) <= {"COMPLETE", "PRUNED"}, counts
    assert_numbers_unique(load(url, name))


def test_a_study_made_before_report_every_says_how_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A study whose stored budget has no report_every ran one report per epoch; resuming
    it where the CPU default reports every 8,192 windows is refused, naming the key and
    the setting that resumes it; with that setting it resumes."""
    url = f"sqlite:///{tmp_path}/old.db"
    cfg = write_study(tmp_path, "old", extra="report_every = 0")
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1") == 0
    study = load(url, "old")
    spec = study.user_attrs["spec"]
    del spec["budget"]["report_every"]  # as an earlier version stored it
    study.set_user_attr("spec", spec)
    cfg.write_text(cfg.read_text().replace("report_every = 0\n", ""))
    capsys.readouterr()
    cpu = ("--device", "cpu")  # the built-in CPU budget: report_every 8192
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1", *cpu) == 2
    err = capsys.readouterr().err
    assert "[budget] report_every: study has 0, this run has 8192 (the study predates" in err
    assert "set report_every = 0 in [budget]" in err
    assert len(load(url, "old").trials) == 1
    cfg.write_text(cfg.read_text().replace("[budget]\n", "[budget]\nreport_every = 0\n"))
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1", *cpu) == 0
    assert len(load(url, "old").trials) == 2
