"""The gRPC storage proxy: a real `optuna-run proxy` subprocess on a free 127.0.0.1 port over a
real SQLite file or PostgreSQL database, and `optuna-run` workers through grpc://."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from search.cli import main as cli_main
from tests.search_tests.studyrun import (
    assert_numbers_unique,
    cli_command,
    cli_env,
    finish,
    fresh_database,
    load,
    start_cli,
    states,
    study_toml,
    tiny_panel,
    unique_name,
    wait_for,
)

pytest.importorskip("grpc")
pytest.importorskip("google.protobuf")


class Proxy:
    """`optuna-run proxy --port 0` in a subprocess; `url` is the grpc:// address it printed."""

    def __init__(self, storage: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*cli_command(), "proxy", "--storage", storage, "--port", "0", *extra],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(
            target=self._read, args=(self.proc.stdout, self.lines), daemon=True
        ).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True).start()
        wait_for(lambda: bool(self.lines) or self.proc.poll() is not None, 60, "the proxy")
        assert self.lines, f"the proxy did not start: {''.join(self.err)}"
        self.url = self.lines[0].split()[-1]
        assert self.url.startswith("grpc://127.0.0.1:"), self.lines[0]

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def proxy_factory() -> Iterator[list[Proxy]]:
    started: list[Proxy] = []
    yield started
    for p in started:
        p.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backing(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'proxied.db'}"
    else:
        yield from fresh_database(request.getfixturevalue("pg_url"))


def test_three_workers_through_the_proxy_complete_a_study(backing, tmp_path, proxy_factory):
    """The proxy caps the study at 12 trials; three workers asking for 20 each stop there,
    with every trial COMPLETE, numbered once, none left RUNNING; the workers hold no database
    connection (they know only the grpc:// address)."""
    proxy = Proxy(backing, "--max-trials", "12")
    proxy_factory.append(proxy)
    name = unique_name("proxy")
    config = study_toml(tmp_path, name, data=tiny_panel(tmp_path), heartbeat=(1, 5))
    workers = [
        start_cli(["--storage", proxy.url, "--config", str(config), "--n-trials", "20"], tmp_path)
        for _ in range(3)
    ]
    for w in workers:
        rc, _, err = finish(w, timeout=300)
        assert rc == 0, err
        assert "storage grpc://127.0.0.1:" in err
    assert states(backing, name) == {"COMPLETE": 12}
    study = load(backing, name)
    assert_numbers_unique(study)
    # Heartbeats went through the proxy into the database's heartbeat table.
    assert proxy.proc.poll() is None
    assert not any("Traceback" in line for line in proxy.err), "".join(proxy.err)


def test_a_dead_workers_trial_is_failed_and_retried_by_the_proxy(tmp_path, proxy_factory):
    """Heartbeats through the proxy: a worker killed mid-trial leaves its trial RUNNING; the
    proxy fails it once the grace period passes and queues its params; the next worker runs
    the retry to COMPLETE."""
    backing = f"sqlite:///{tmp_path / 'hb.db'}"
    proxy = Proxy(backing, "--grace-period", "3", "--max-retry", "2")
    proxy_factory.append(proxy)
    name = unique_name("proxyhb")
    config = study_toml(tmp_path, name, epochs=40, windows=512, heartbeat=(1, 3))
    doomed = start_cli(
        ["--storage", proxy.url, "--config", str(config), "--n-trials", "1"], tmp_path
    )

    def training() -> bool:
        if not Path(backing[len("sqlite:///") :]).exists():
            return False
        try:
            running = load(backing, name).get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
            )
        except KeyError:
            return False
        return any(t.intermediate_values for t in running)

    wait_for(training, 120, "a trial training behind the proxy")
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=30)
    # The proxy, not a worker, fails the stale trial (no worker runs now).
    # (Failing it and queueing its retry are two steps: wait for both.)
    wait_for(
        lambda: states(backing, name) == {"FAIL": 1, "WAITING": 1},
        60,
        "the proxy to fail the trial and queue its retry",
    )
    rc, _, err = finish(
        start_cli(["--storage", proxy.url, "--config", str(config), "--n-trials", "1"], tmp_path),
        timeout=300,
    )
    assert rc == 0, err
    trials = load(backing, name).get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(failed) == 1 and len(done) == 1 and len(trials) == 2
    assert done[0].system_attrs.get("failed_trial") == failed[0].number
    assert done[0].params == failed[0].params


def test_max_trials_on_a_worker_behind_the_proxy_is_refused(tmp_path, capsys):
    config = study_toml(tmp_path, "capped", data=tiny_panel(tmp_path))
    argv = ["--storage", "grpc://127.0.0.1:9", "--config", str(config), "--max-trials", "5"]
    assert cli_main([*argv, "-q"]) == 2
    err = capsys.readouterr().err
    assert "optuna-run proxy --storage URL --max-trials N" in err


def test_unreachable_proxy_is_a_clear_error(tmp_path, capsys):
    from search.storage.rdb import StorageError, make_storage

    with pytest.raises(
        StorageError, match=r"cannot reach the storage proxy at grpc://127\.0\.0\.1:9"
    ):
        make_storage("grpc://127.0.0.1:9", reconnect_s=2)
    with pytest.raises(StorageError, match="expected grpc://HOST:PORT"):
        make_storage("grpc://nohost")


def test_a_stock_client_without_heartbeats_keeps_its_trial(tmp_path, proxy_factory):
    """Optuna's own GrpcStorageProxy client runs no heartbeat thread (ask/tell): the proxy
    never fails its running trial, however long it runs, as Optuna's storage would not."""
    proxy = Proxy(f"sqlite:///{tmp_path / 'stock.db'}", "--grace-period", "3")
    proxy_factory.append(proxy)
    host, port = proxy.url[len("grpc://") :].rsplit(":", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.GrpcStorageProxy(host=host, port=int(port))
    storage.wait_server_ready(timeout=30)
    study = optuna.create_study(study_name="stock", storage=storage)
    trial = study.ask()
    time.sleep(7)  # more than twice the grace period: the proxy has looked for stale trials
    study.tell(trial, 1.0)
    assert [t.state for t in study.get_trials()] == [optuna.trial.TrialState.COMPLETE]


def test_an_unreachable_proxy_is_said_with_its_status(capsys, monkeypatch):
    """The retry line of a proxy that cannot be reached names the gRPC status and its
    details, not the first line of the error's text (which says nothing)."""
    import grpc

    from search.storage.retry import _retrying

    channel = grpc.insecure_channel("127.0.0.1:9")
    try:
        call = channel.unary_unary("/optuna.StorageService/GetAllStudies")
        with pytest.raises(grpc.RpcError) as lost:
            call(b"", timeout=5)
    finally:
        channel.close()

    class Flaky:
        reconnect_s = 5.0
        display = display_url = "grpc://127.0.0.1:9"
        calls = 0

        def get(self) -> int:
            self.calls += 1
            if self.calls == 1:
                raise lost.value
            return 7

    assert _retrying(Flaky.get)(Flaky()) == 7
    err = capsys.readouterr().err
    assert "storage grpc://127.0.0.1:9 unreachable (UNAVAILABLE: " in err, err
    assert "_InactiveRpcError" not in err and "retry 1 in 1s" in err

    # a worker's storage call that failed for good says the same
    from search.config import load_config
    from search.storage.rdb import StorageError
    from search.study import runner
    from search.study.stop import Stop

    class Gone:
        def get_study_id_from_name(self, name: str) -> int:
            raise lost.value

    cfg = load_config(overrides={"study": {"name": "gone"}})
    monkeypatch.setattr(runner, "study_pruner", lambda cfg, data: optuna.pruners.NopPruner())
    with pytest.raises(StorageError, match=r"^storage failed: UNAVAILABLE: \S"):
        runner.run_trials(
            cfg,
            "grpc://127.0.0.1:9",
            None,  # type: ignore[arg-type]
            n_trials=1,
            timeout=None,
            max_trials=None,
            on_trial=lambda ev: None,
            stop=Stop(),
            storage=Gone(),  # type: ignore[arg-type]
        )
