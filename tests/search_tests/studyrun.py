"""Helpers for tests that run real studies: tiny study TOMLs, `optuna-run` subprocesses,
fresh PostgreSQL databases, and reading back what a study holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from search.storage.rdb import make_storage
from tests.conftest import SAMPLE, write_panel

TERMINAL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def tiny_panel(folder: Path, n_ids: int = 4) -> Path:
    """80 dates x `n_ids` securities x 2 features: with 4 securities a trial of a tiny model
    takes milliseconds; with 200, an epoch over every window takes 43 batches."""
    return write_panel(folder / "tiny.parquet", n_dates=80, n_ids=n_ids)


def study_toml(
    folder: Path,
    name: str,
    *,
    data: Path | None = None,
    epochs: int = 1,
    windows: int = 256,
    heartbeat: tuple[int, int] = (20, 60),
    max_retry: int = 2,
    file: str | None = None,
) -> Path:
    """A study TOML with a tiny fixed model; `data` None means the bundled S&P 500 sample
    (a trial of about 0.3 s per epoch), else a panel file written by `tiny_panel`."""
    if data is None:
        table = f'path = "{SAMPLE}"'
    else:
        table = f'path = "{data.name}"\nid = "id"\ntarget = "target"\nfeatures = ["f*"]'
    path = folder / f"{file or name}.toml"
    path.write_text(
        f"""[study]
name = "{name}"
objective = "val_loss"

[data]
{table}

[budget]
max_windows_per_epoch = {windows}

[search]
sampler = "random"
pruner = "none"

[storage]
heartbeat_interval = {heartbeat[0]}
grace_period = {heartbeat[1]}
max_retry = {max_retry}

[space]
time_steps = 3
num_layers = 1
hidden_dim = 4
head_dim = 0
batch_size = 256
epochs = {epochs}
"""
    )
    return path


def cli_command() -> list[str]:
    """`optuna-run` of this interpreter's environment."""
    script = Path(sys.executable).parent / "optuna-run"
    return [str(script)] if script.exists() else [sys.executable, "-m", "search.cli"]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of an `optuna-run` subprocess: no $OPTUNA_STORAGE of the caller, one
    torch thread (several processes share two cores in these tests)."""
    env = {k: v for k, v in os.environ.items() if k != "OPTUNA_STORAGE"}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **extra)
    return env


def start_dashboard(url: str, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    """`optuna-run dashboard` on a free 127.0.0.1 port, and the first line it prints (its URL,
    once the socket is bound)."""
    proc = subprocess.Popen(
        [*cli_command(), "dashboard", "--storage", url, "--port", "0"],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def start_cli(args: list[str], cwd: Path, **kw: Any) -> subprocess.Popen[str]:
    env = kw.pop("env", None) or cli_env()
    return subprocess.Popen(
        [*cli_command(), "-q", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Where it hangs: optuna-run writes every thread's stack to stderr on SIGUSR1.
        proc.send_signal(signal.SIGUSR1)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"optuna-run did not finish in {timeout}s; stderr:\n{err}")
    return proc.returncode, out, err


def load(url: str, name: str) -> optuna.Study:
    """The study, opened the way optuna-run opens storages (schema set-up under its lock)."""
    return optuna.load_study(study_name=name, storage=make_storage(url, heartbeat_interval=None))


def states(url: str, name: str) -> dict[str, int]:
    trials = load(url, name).get_trials(deepcopy=False)
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def assert_numbers_unique(study: optuna.Study) -> None:
    numbers = [t.number for t in study.get_trials(deepcopy=False)]
    assert sorted(numbers) == list(range(len(numbers))), numbers


def wait_for(cond: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def training(url: str, name: str, at_least: int = 1) -> bool:
    """True when `at_least` trials are RUNNING and have reported an epoch (mid-training)."""
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        return False
    storage = make_storage(url, heartbeat_interval=None)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    except KeyError:
        return False
    finally:
        storage.engine.dispose()
    return sum(1 for t in running if t.intermediate_values) >= at_least


def children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmdline = (d / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"resource_tracker" not in cmdline:
            out.append(int(d.name))
    return out


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def fresh_database(url: str) -> Iterator[str]:
    """A new, empty PostgreSQL (or MySQL) database on the test server of `url`; dropped
    afterwards."""
    name = f"optuna_t_{uuid.uuid4().hex[:12]}"
    mysql = make_url(url).get_backend_name() == "mysql"
    q, force = ("`", "") if mysql else ('"', " WITH (FORCE)")  # how each server says it
    admin_url = make_url(url) if mysql else make_url(url).set(database="postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as con:
            con.execute(text(f"CREATE DATABASE {q}{name}{q}"))
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as con:
            con.execute(text(f"DROP DATABASE IF EXISTS {q}{name}{q}{force}"))
        admin.dispose()
