"""Many workers, one study: concurrent `optuna-run` invocations on PostgreSQL and on SQLite,
local worker processes, and --max-trials across invocations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from sqlalchemy.engine import make_url

from search.cli import main as cli_main
from search.study.runner import cpu_count, torch_threads
from tests.search_tests.studyrun import (
    assert_numbers_unique,
    cli_env,
    finish,
    fresh_database,
    load,
    start_cli,
    states,
    study_toml,
    tiny_panel,
    unique_name,
)

SECRET = "Zq7-s3cret-pw"


@pytest.fixture
def fresh_pg(pg_url: str) -> Iterator[str]:
    yield from fresh_database(pg_url)


@pytest.mark.postgres
def test_three_invocations_share_one_postgres_study(fresh_pg, tmp_path):
    """Three `optuna-run` started together on a fresh database (they race to create its
    schema and the study), 10 trials each. The URL holds a password (the trust-auth test
    server accepts any): no output shows it."""
    name = unique_name("pg3")
    config = study_toml(tmp_path, name, data=tiny_panel(tmp_path))
    url = make_url(fresh_pg).set(password=SECRET).render_as_string(hide_password=False)
    env = cli_env(OPTUNA_STORAGE=url)
    args = ["--config", str(config), "--n-trials", "10"]
    procs = [start_cli(args, tmp_path, env=env) for _ in range(3)]
    results = [finish(p) for p in procs]
    for rc, out, err in results:
        assert rc == 0, err
        assert "this run finished 10 trials (10 complete" in err
        assert SECRET not in out + err and "postgres:***@127.0.0.1" in err
    study = load(fresh_pg, name)
    assert states(fresh_pg, name) == {"COMPLETE": 30}
    assert_numbers_unique(study)


@pytest.mark.slow
def test_four_local_workers_on_sqlite(tmp_path):
    """Four worker processes with millisecond trials: SQLite writers collide all the time
    (heartbeats, trial starts, reports, attrs), and none of them fails on a lock."""
    name = unique_name("sq4")
    config = study_toml(tmp_path, name, data=tiny_panel(tmp_path), heartbeat=(1, 5))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    rc, _, err = finish(
        start_cli(
            ["--config", str(config), "--storage", url, "--n-trials", "48", "--workers", "4"],
            tmp_path,
        )
    )
    assert rc == 0, err
    assert "locked" not in err.lower()
    assert "this run finished 48 trials (48 complete" in err
    assert states(url, name) == {"COMPLETE": 48}
    study = load(url, name)
    assert_numbers_unique(study)
    assert max_overlap(study) >= 2  # trials really ran at the same time


def max_overlap(study: optuna.Study) -> int:
    """The most trials that were running at one instant."""
    edges = []
    for t in study.trials:
        assert t.datetime_start and t.datetime_complete
        edges += [(t.datetime_start, 1), (t.datetime_complete, -1)]
    running = most = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        running += step
        most = max(most, running)
    return most


def _max_trials(url: str, tmp_path: Path, workers: str) -> None:
    name = unique_name("cap")
    config = study_toml(tmp_path, name, data=tiny_panel(tmp_path))
    args = ["--config", str(config), "--storage", url, "--n-trials", "40", "--max-trials", "14"]
    procs = [start_cli(args, tmp_path), start_cli([*args, "--workers", workers], tmp_path)]
    results = [finish(p) for p in procs]
    password = make_url(url).password
    for rc, out, err in results:
        assert rc == 0, err
        assert not password or str(password) not in out + err
    assert states(url, name) == {"COMPLETE": 14}
    ran = [int(err.split("this run finished ")[1].split()[0]) for _, _, err in results]
    assert sum(ran) == 14
    assert_numbers_unique(load(url, name))
    # a machine that joins late starts nothing
    assert cli_main([*args, "-q"]) == 0
    assert len(load(url, name).trials) == 14


def test_max_trials_stops_two_invocations_at_the_study_total_sqlite(tmp_path, monkeypatch):
    """Two invocations asking for 40 trials each on a fresh SQLite file stop together at
    exactly 14 in the study."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _max_trials(f"sqlite:///{tmp_path / 'cap.db'}", tmp_path, "1")


@pytest.mark.postgres
@pytest.mark.slow
def test_max_trials_stops_two_invocations_at_the_study_total_postgres(
    fresh_pg, tmp_path, monkeypatch
):
    """The same on PostgreSQL, one invocation with two worker processes, and a password in
    the URL that no output shows."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    url = make_url(fresh_pg).set(password=SECRET).render_as_string(hide_password=False)
    _max_trials(url, tmp_path, "2")


def test_torch_threads_divide_the_cores_unless_set(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    n = cpu_count()
    assert torch_threads() == n
    assert torch_threads(n) == 1 and torch_threads(4 * n) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert torch_threads(4) == 3


def test_workers_panel_copy_goes_where_it_fits() -> None:
    """The workers' panel copy goes to /dev/shm only when it has room (a container's is often
    64 MB); otherwise to the temporary folder."""
    import os
    import shutil
    import tempfile

    from search.study.session import tempfile_root

    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        pytest.skip("no writable /dev/shm here")
    assert tempfile_root(0) == str(shm)
    assert tempfile_root(shutil.disk_usage(shm).free + 1) == tempfile.gettempdir()
