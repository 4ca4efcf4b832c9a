"""A second Ctrl-C's last act (search.study.runner.fail_left_running): the RUNNING trials of
the given workers told FAIL on a connection of their own, nobody else's; and the study's
luck over trials recorded before and after the horizon was kept with their values."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings

import numpy as np
import optuna

from search.config import load_config
from search.storage.rdb import make_storage
from search.study.luck import daily_matrix, study_luck
from search.study.runner import EXITED, fail_left_running, worker_name

RUNNING, FAIL = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL


def test_only_the_given_workers_running_trials_are_failed(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    cfg = load_config(overrides={"study": {"name": "exit"}})
    storage = make_storage(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(study_name="exit", storage=storage)
        mine, told, other = study.ask(), study.ask(), study.ask()
    for t, who in ((mine, worker_name()), (told, worker_name()), (other, "elsewhere:1")):
        t.set_user_attr("worker", who)
    told.set_user_attr("fail_reason", "interrupted (SIGINT/SIGTERM)")  # the first Ctrl-C's
    assert fail_left_running(cfg, url, {worker_name()}) == 2
    trials = optuna.load_study(study_name="exit", storage=url).trials
    assert [t.state for t in trials] == [FAIL, FAIL, RUNNING]
    assert trials[0].user_attrs["fail_reason"] == EXITED
    assert trials[1].user_attrs["fail_reason"] == "interrupted (SIGINT/SIGTERM)"
    assert trials[0].datetime_complete is not None  # as Optuna's own FAIL writes it
    storage.close()


def test_the_luck_keeps_trials_recorded_before_the_horizon_was() -> None:
    """A study resumed across the change: its old trials' per-date values carry no horizon,
    its new ones carry 5; all count, and the deflated Sharpe counts overlapping dates."""
    rng = np.random.default_rng(0)
    study = optuna.create_study(direction="maximize")
    for k in range(6):
        values = [float(v) for v in 0.01 * k + rng.standard_normal(40) * 0.1]
        daily = {"metric": "rank_ic", "ranges": [[0, 40]], "values": values}
        if k >= 3:
            daily["horizon"] = 5
        study.add_trial(
            optuna.create_trial(
                value=float(np.mean(values)),
                user_attrs={"daily_values": daily},
            )
        )
    m, numbers, metric, _ = daily_matrix(study.trials)
    assert numbers == list(range(6)) and m.shape == (40, 6) and metric == "rank_ic"
    luck = study_luck(study)
    assert luck["dsr"]["overlap"] == 5 and luck["dsr"]["dates"] == 40


def test_a_third_ctrl_c_exits_without_waiting_for_the_second() -> None:
    """The second Ctrl-C's last act may wait (its storage write, up to 3 s); a third exits
    at once."""
    script = (
        "import os, signal, threading, time\n"
        "from search.study.stop import SignalStop, Stop\n"
        "SignalStop(Stop(), at_exit=lambda: time.sleep(30)).install()\n"
        "def press():\n"
        "    for _ in range(3):\n"
        "        time.sleep(0.3)\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "threading.Thread(target=press, daemon=True).start()\n"
        "time.sleep(60)\n"
    )
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == 130 and time.monotonic() - t0 < 10
