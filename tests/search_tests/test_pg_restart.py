"""PostgreSQL restarted in the middle of a study: the REAL local server is stopped for longer
than the heartbeat's grace period and started again while three workers train; a fourth,
whichever was training when looked at, is killed mid-trial just before (as one on a
machine lost with it would be).

The three workers wait (a bounded retry with a line on stderr, password masked), reconnect
and go on with their trials; the dead worker's trial, whose heartbeat went stale, is failed
and re-run with the same params by a live worker (as is any live worker's trial that a
stale-trial check reached before its heartbeat resumed); the study ends with exactly the
requested COMPLETE trials, each number once, nothing RUNNING or WAITING. Needs root and `pg_ctlcluster` (Debian's PostgreSQL packaging); PostgreSQL is
started again in a `finally`, whatever happens.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import optuna
import pytest
from sqlalchemy.engine import make_url

from tests.search_tests.studyrun import (
    assert_numbers_unique,
    finish,
    fresh_database,
    load,
    start_cli,
    study_toml,
    unique_name,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
SECRET = "Rst-9s3cret-pw"
TOTAL = 18
DOWN_S = 6  # longer than the grace period (3 s): running trials' heartbeats go stale


def _cluster() -> tuple[str, str] | None:
    """(version, name) of the local cluster on port 5432, from pg_lsclusters."""
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        return None
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        f = line.split()
        if len(f) >= 3 and f[2] == "5432":
            return f[0], f[1]
    return None


def _ctl(cluster: tuple[str, str], action: str, *extra: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action, *extra],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _ready() -> bool:
    r = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False)
    return r.returncode == 0


@pytest.fixture
def cluster(pg_url) -> tuple[str, str]:
    found = _cluster()
    if found is None or os.geteuid() != 0:
        pytest.skip("restarting PostgreSQL needs root and pg_ctlcluster with a cluster on 5432")
    return found


@pytest.fixture
def fresh_pg(pg_url) -> Iterator[str]:
    yield from fresh_database(pg_url)


def test_postgres_restart_mid_study_with_three_workers(cluster, fresh_pg, tmp_path):
    url = make_url(fresh_pg).set(password=SECRET).render_as_string(hide_password=False)
    name = unique_name("restart")
    # ~0.5 s per epoch on the bundled sample on a slow 2-core VM: a trial trains for seconds.
    config = study_toml(tmp_path, name, epochs=10, windows=1024, heartbeat=(1, 3), max_retry=3)
    args = ["--storage", url, "--config", str(config), "--n-trials", "100"]
    workers = [start_cli([*args, "--max-trials", str(TOTAL)], tmp_path) for _ in range(4)]
    by_pid = {w.pid: w for w in workers}
    killed: list[subprocess.Popen[str]] = []
    outputs: list[tuple[int, str, str]] = []
    try:

        def mid_study() -> bool:
            try:  # read fresh (no trial cache) on one pool, not a new one per poll
                study = optuna.load_study(study_name=name, storage=poller)
            except KeyError:  # the study is not created yet
                return False
            trials = study.get_trials(deepcopy=False)
            done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
            if done >= TOTAL:
                pytest.fail("the study ended before a worker could be killed mid-trial")
            training = [
                t
                for t in trials
                if t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values
            ]
            pids = [int(str(t.user_attrs.get("worker", ":0")).rsplit(":", 1)[1]) for t in training]
            running.clear()
            running.extend(t.number for t in training)
            if done >= 1 and len(training) >= 2 and pids[0] in by_pid:
                # whichever worker trains now (one may be slower to start than the others)
                killed.append(by_pid[pids[0]])
                killed[0].kill()  # at once, mid-trial: its trial's heartbeat stops
                return True
            return False

        running: list[int] = []
        poller = optuna.storages.RDBStorage(fresh_pg)
        try:
            wait_for(mid_study, 300, "two trials training, one of them killed", poll=0.1)
        finally:
            poller.engine.dispose()
        try:
            _ctl(cluster, "stop", "-m", "fast")
            time.sleep(DOWN_S)
        finally:
            _ctl(cluster, "start")
            wait_for(_ready, 60, "PostgreSQL to accept connections again")
        (victim,) = killed
        victim.communicate()
        outputs = [finish(w, timeout=400) for w in workers if w is not victim]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.communicate()
        if not _ready():  # never leave the server down
            _ctl(cluster, "start")

    for rc, out, err in outputs:
        assert rc == 0, err
        assert SECRET not in out and SECRET not in err
    errs = "\n".join(err for _, _, err in outputs)
    # The workers said what they waited for, with the password masked.
    assert "unreachable" in errs and "retry 1 in" in errs, errs
    assert "postgres:***@127.0.0.1:5432" in errs, errs

    study = load(fresh_pg, name)
    trials = study.get_trials(deepcopy=False)
    assert_numbers_unique(study)
    by_state: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in trials:
        by_state.setdefault(t.state.name, []).append(t)
    assert len(by_state.get("COMPLETE", [])) == TOTAL, {k: len(v) for k, v in by_state.items()}
    assert set(by_state) <= {"COMPLETE", "FAIL"}, {k: len(v) for k, v in by_state.items()}
    # Every failed trial was re-run with its params, and the re-run completed (a retry of a
    # retry names the first failure in its retry history).
    complete = by_state["COMPLETE"]
    for f in by_state.get("FAIL", []):
        retries = [
            t
            for t in complete
            if f.number == t.system_attrs.get("failed_trial")
            or f.number in t.system_attrs.get("retry_history", [])
        ]
        assert retries, f"trial {f.number} failed and was not re-run to completion"
        # A retry runs the params the failed trial had; one failed before its worker wrote
        # them all (created as the server went down, its creator cut off) had fewer, and
        # its retry samples the rest.
        for r in retries:
            assert f.params.items() <= r.params.items(), (f.number, f.params, r.number, r.params)
    # The trials running when the server went down ended COMPLETE, or FAIL with a retry;
    # the dead worker's trial was failed by the heartbeat.
    states = {t.number: t.state.name for t in trials}
    assert all(states[n] in ("COMPLETE", "FAIL") for n in running)
    # The killed worker left nothing RUNNING: the trial it was training ends FAIL through the
    # heartbeat (or COMPLETE, when its last epoch ended between the check and the kill).
    victims = [t for t in trials if str(t.user_attrs.get("worker", "")).endswith(f":{victim.pid}")]
    assert victims, "the killed worker ran no trial"
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in victims), [
        (t.number, t.state.name) for t in victims
    ]
    print(
        f"running at the stop: {running}; states after: "
        f"{ {n: states[n] for n in running} }; failed and retried: "
        f"{[t.number for t in by_state.get('FAIL', [])]}"
    )
