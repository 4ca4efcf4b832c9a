"""`train` fits the selected configuration at the study's final budget ([final]); `train
--exact` reproduces the trial; several networks are averaged on a common per-date scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data import ConfigError
from models import TrainParams, per_date_zscore
from models.train import make_schedule
from search.cli import main
from search.config import build_config
from tests.search_tests.helpers import run_cli, write_study

FINAL = """
[search]
pruner = "none"
[final]
max_windows_per_epoch = 512
epochs = 4
patience = 0
seeds = 2
"""


def test_final_fit_is_the_final_budget_and_deterministic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/f.db"
    cfg = write_study(tmp_path, "fin", extra=FINAL)
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "2", "--seed", "3") == 0
    args = ["train", "--study-name", "fin", "--storage", url, "--no-tree", "--device", "cpu"]
    a, b, exact = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "x.pt"
    capsys.readouterr()
    assert main([*args, "--out", str(a)]) == 0
    err = capsys.readouterr().err
    assert "final fit ([final]): 512 training windows an epoch, up to 4 epochs" in err
    assert "cosine learning rate" in err
    assert "`train --exact` reproduces the trial instead" in err
    # its value is the networks' mean, as a trial's is; the table scores their average
    assert "(the mean of its 2 networks' values; the trial, at the search's budget" in err
    assert "the networks averaged are scored in the table below" in err
    assert main([*args, "--out", str(b)]) == 0
    ca, cb = (torch.load(p, weights_only=True) for p in (a, b))
    assert ca["fit"] == "final" and ca["final"]["seeds"] == 2 and ca["final"]["epochs"] == 4
    assert ca["final"]["lr_schedule"] == "cosine"
    assert not ca["reproduced"]["match"]  # a final fit is not a reproduction
    (ma,), (mb,) = ca["models"], cb["models"]
    assert len(ma["states"]) == 2 and ma["params"]["epochs"] == 4
    assert 1 <= ma["best_epoch"] <= 4
    for sa, sb in zip(ma["states"], mb["states"], strict=True):  # the same on a CPU, bitwise
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ca["verdict"]["test"]["model"] == cb["verdict"]["test"]["model"]
    # --exact: the trial at the search's budget, its own seeds, reproduced
    assert main([*args, "--out", str(exact), "--exact"]) == 0
    cx = torch.load(exact, weights_only=True)
    assert cx["fit"] == "exact" and cx["final"] is None and cx["reproduced"]["match"]
    assert "reproduced the trial's value" in capsys.readouterr().err


def test_final_config_on_a_cpu_and_its_checks(tmp_path: Path) -> None:
    cfg = write_study(tmp_path, "c", extra="[final]\nepochs = 7\n[cpu.final]\nseeds = 5")
    cpu, gpu = build_config(cfg, cpu=True), build_config(cfg, cpu=False)
    assert (cpu.final.epochs, cpu.final.seeds) == (7, 5)
    assert (gpu.final.epochs, gpu.final.seeds) == (7, 3)
    assert build_config(None, cpu=True).final.epochs == 8  # the built-in CPU final fit
    bad = write_study(
        tmp_path, "b", extra='[final]\nseeds = 0\nepochs = "x"\npatiense = 1\nlr_schedule = "step"'
    )
    with pytest.raises(ConfigError) as e:
        build_config(bad, cpu=True)
    msg = str(e.value)
    assert "[final] seeds: must be >= 1, got 0" in msg
    assert "[final] lr_schedule: expected one of constant, cosine, got 'step'" in msg
    assert "epochs" in msg and "patiense" in msg and "did you mean 'patience'" in msg


def test_per_date_zscore_by_hand() -> None:
    # two members, dates 0 (three rows) and 1 (two rows); member 2 has ten times the scale
    out = torch.tensor([[1.0, 2.0, 3.0, 5.0, 7.0], [10.0, 20.0, 30.0, 70.0, 50.0]])
    date = torch.tensor([0, 0, 0, 1, 1])
    z = per_date_zscore(out, date)
    s = np.sqrt(2.0 / 3.0)  # population sd of (1, 2, 3)
    want = [[-1 / s, 0.0, 1 / s, -1.0, 1.0], [-1 / s, 0.0, 1 / s, 1.0, -1.0]]
    assert z.numpy() == pytest.approx(np.array(want), abs=1e-6)
    # one row on a date, or a constant member: 0, not NaN
    assert per_date_zscore(torch.tensor([[4.0, 4.0, 9.0]]), torch.tensor([0, 0, 1])).tolist() == [
        [0.0, 0.0, 0.0]
    ]


def test_per_date_average_keeps_the_members_scale() -> None:
    from models import per_date_average

    date = torch.tensor([0, 0, 0, 1, 1])
    a = torch.tensor([1.0, 2.0, 3.0, 5.0, 7.0])
    assert per_date_average(torch.stack([a, a]), date) == pytest.approx(a)  # alike: itself
    # ten times the scale: the same order, the mean of the two spreads and locations
    avg = per_date_average(torch.stack([a, 10 * a]), date).numpy()
    assert avg[:3] == pytest.approx([5.5 * v for v in (1.0, 2.0, 3.0)])
    assert avg[3:] == pytest.approx([5.5 * 5.0, 5.5 * 7.0])


def test_cosine_schedule_ends_at_five_percent_of_the_rate() -> None:
    p = TrainParams(time_steps=2, epochs=3, batch_size=10, lr=0.02, lr_schedule="cosine")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=p.lr)
    schedule = make_schedule(opt, p, per_epoch=25)  # 3 batches an epoch, 9 steps
    assert schedule is not None
    rates = []
    for _ in range(9):
        opt.step()
        schedule.step()
        rates.append(opt.param_groups[0]["lr"])
    assert rates[-1] == pytest.approx(0.001)
    halfway = 0.001 + (0.02 - 0.001) * (1 + np.cos(np.pi * 4 / 9)) / 2
    assert rates[3] == pytest.approx(halfway)
    assert all(a > b for a, b in zip(rates[:-1], rates[1:], strict=True))
    assert make_schedule(opt, TrainParams(2, 3, 10, 0.02), 25) is None


def test_the_final_line_compares_with_the_trial_only_on_the_studys_data() -> None:
    """A final fit on other data scores other validation dates: its value is not set beside
    the trial's as if the two were comparable."""
    from search.cli.train import _final_line

    final = {"max_windows_per_epoch": 0, "epochs": 8, "patience": 2, "lr_schedule": "cosine"}
    ckpt = {"final": final, "models": [{"states": [{}]}], "same_data_as_study": True}
    assert "(the trial, at the search's budget: 0.0361)" in _final_line(ckpt, "0.04", "0.0361")
    line = _final_line({**ckpt, "same_data_as_study": False}, "0.00888", "0.0361")
    assert "(on other dates than the trial's 0.0361: the data differ from the study's)" in line
    assert "at the search's budget: 0.0361" not in line
