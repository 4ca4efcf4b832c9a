"""Storage URLs, password masking, concurrent set-up of a fresh database, and the trial cap
(--max-trials) made atomic in the storage, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.engine import make_url

from search.cli import main as cli_main
from search.storage.rdb import (
    DEFAULT_STORAGE,
    StorageError,
    StudyFull,
    check_url,
    describe,
    fail_stale,
    make_storage,
    mask,
    resolve_url,
    scrub,
)
from search.study.objective import set_user_attrs
from tests.search_tests.studyrun import (
    assert_numbers_unique,
    fresh_database,
    study_toml,
    tiny_panel,
    unique_name,
)

SECRET = "Zq7-s3cret-pw"
# What only the fast path does (search/storage/_optuna); the stock path is Optuna's own.
fast_only = pytest.mark.skipif(
    os.environ.get("OPTUNA_RUN_STOCK_STORAGE") == "1",
    reason="the fast path's own behaviour; OPTUNA_RUN_STOCK_STORAGE=1 takes Optuna's",
)

# ------------------------------------------------------------------ URL resolution, masking


def test_flag_wins_over_env_which_wins_over_default(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPTUNA_STORAGE", "sqlite:///from-env.db")
    assert resolve_url("sqlite:///from-flag.db") == f"sqlite:///{tmp_path / 'from-flag.db'}"
    assert resolve_url(None) == f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.delenv("OPTUNA_STORAGE")
    assert DEFAULT_STORAGE == "sqlite:///studies/optuna.db"
    assert resolve_url(None) == f"sqlite:///{tmp_path / 'studies' / 'optuna.db'}"
    monkeypatch.setenv("OPTUNA_STORAGE", "")
    assert resolve_url(None) == f"sqlite:///{tmp_path / 'studies' / 'optuna.db'}"


def test_absolute_sqlite_and_postgres_urls():
    assert resolve_url("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert resolve_url("sqlite:///:memory:") == "sqlite:///:memory:"
    assert resolve_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert resolve_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert resolve_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        (f"postgresql+psycopg://alice:{SECRET}@db.example:5432/optuna", [SECRET]),
        (
            "postgresql+psycopg://alice:p%40ss%3Aw%2Frd@db.example/optuna",
            ["p@ss:w/rd", "p%40ss%3Aw%2Frd"],
        ),
        (
            f"postgresql+psycopg://alice@db.example/optuna?password={SECRET}&sslmode=require",
            [SECRET],
        ),
        (  # the password of the client's SSL key
            f"postgresql+psycopg://alice@db.example/optuna?sslmode=require&sslpassword={SECRET}",
            [SECRET],
        ),
        (  # an unencoded @ in the password
            "postgresql+psycopg://alice:pa@ss@db.example:5432/optuna",
            ["pa@ss"],
        ),
    ],
)
def test_mask_and_scrub_hide_the_password(url, secrets):
    masked = mask(url)
    assert "***" in masked and "alice" in masked and "db.example" in masked
    assert all(s not in masked for s in secrets)
    assert describe(url) == masked
    out = scrub(f"cannot connect to {url}: password {' or '.join(secrets)} rejected", url)
    assert all(s not in out for s in secrets), out
    assert "db.example" in out


def test_no_part_of_a_password_with_an_unencoded_at_shows():
    masked = mask("postgresql+psycopg://alice:pa@ss@db.example:5432/optuna")
    assert masked == "postgresql+psycopg://alice:***@db.example:5432/optuna"


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql+psycopg://alice:Xq7@Zk9@db.example:5432/optuna", "Xq7@Zk9"),
        ("postgresql+psycopg://me@corp.com:Xq7@Zk9@db.example/optuna", "Xq7@Zk9"),
        ("postgresql+psycopg://alice:Xq7/Zk9@db.example/optuna", "Xq7/Zk9"),
    ],
)
def test_an_ambiguous_user_info_is_refused_and_never_shown(url, secret):
    with pytest.raises(StorageError, match="percent-encode") as e:
        check_url(url)
    shown = str(e.value)
    assert "db.example" in shown
    assert all(part not in shown for part in secret.replace("/", "@").split("@")), shown


def test_an_at_in_the_query_is_not_the_user_infos():
    url = "postgresql+psycopg://alice:pw@db.example:5432?application_name=a@b"
    check_url(url)  # no refusal
    assert mask(url).startswith("postgresql+psycopg://alice:***@db.example:5432?")


def test_describe_sqlite_is_the_file():
    assert describe("sqlite:////tmp/x/optuna.db") == "/tmp/x/optuna.db"


def test_unsupported_url_names_what_is_offered():
    with pytest.raises(StorageError, match="journal files are not offered"):
        make_storage("journal.log")
    with pytest.raises(StorageError) as e:  # a path: the URL it means is named
        check_url("studies/optuna.db")
    assert "a path, not a URL: for a SQLite file write sqlite:///studies/optuna.db" in str(e.value)
    for no_scheme in (f"alice:{SECRET}@db.example:5432/optuna", f"postgresql:a:{SECRET}@h/db"):
        with pytest.raises(StorageError) as e:  # no scheme, a password: masked, no path hint
            check_url(no_scheme)
        assert SECRET not in str(e.value) and ":***@" in str(e.value)
        assert "sqlite:///" + no_scheme[:5] not in str(e.value)
    with pytest.raises(StorageError) as e:  # two slashes: a host, which SQLite has not
        check_url("sqlite://studies/x.db")
    assert str(e.value) == (
        "storage URL 'sqlite://studies/x.db': a SQLite URL has no host: three slashes before a "
        "relative path (sqlite:///studies/optuna.db), four before an absolute one "
        "(sqlite:////tmp/optuna.db)"
    )
    with pytest.raises(StorageError, match=r"\*\*\*") as e:
        make_storage(f"redis://u:{SECRET}@localhost/0")
    assert SECRET not in str(e.value)


def test_unreachable_postgres_error_is_masked():
    url = f"postgresql+psycopg://alice:{SECRET}@127.0.0.1:9/optuna?connect_timeout=2"
    with pytest.raises(StorageError) as e:
        make_storage(url, heartbeat_interval=None)
    assert SECRET not in str(e.value)
    assert "alice:***@127.0.0.1:9" in str(e.value)


# ------------------------------------------------------------ concurrent fresh-database set-up


def _at_once(target: Any, args: list[tuple[Any, ...]]) -> list[Any]:
    """`target(*a, barrier, q)` in one forked process per `a`, released together at the
    barrier; what each put on the queue. Fork: the children need nothing of torch, so they
    start in milliseconds and collide."""
    ctx = mp.get_context("fork")
    barrier, q = ctx.Barrier(len(args)), ctx.Queue()
    ps = [ctx.Process(target=target, args=(*a, barrier, q)) for a in args]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for p in ps:
            p.start()
    results = [q.get(timeout=120) for _ in ps]
    for p in ps:
        p.join(timeout=30)
    return results


def _open_and_run(url: str, name: str, n: int, max_trials: int | None, barrier: Any, q: Any):
    """One process: open the storage at the same instant as the others, create-or-load the
    study, then run `n` toy trials as fast as the storage lets it."""
    try:
        barrier.wait()
        storage = make_storage(url, heartbeat_interval=1, grace_period=2, max_trials=max_trials)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)
            try:
                study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=n)
            except Exception as e:
                if type(e).__name__ != "StudyFull":
                    raise
        q.put("ok")
    except BaseException as e:
        q.put(f"{type(e).__name__}: {e}")


def _race(url: str, name: str, procs: int, n: int, max_trials: int | None = None) -> list[str]:
    return _at_once(_open_and_run, [(url, name, n, max_trials)] * procs)


def _pop_waiting(url: str, barrier: Any, q: Any) -> None:
    """One process: run queued (WAITING) trials, as retries of dead workers' trials are."""
    try:
        storage = make_storage(url, heartbeat_interval=None)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.load_study(study_name="queue", storage=storage)
        barrier.wait()
        ran: list[int] = []

        def objective(t: optuna.Trial) -> float:
            ran.append(t.number)
            return t.suggest_float("x", 0, 100)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.optimize(objective, n_trials=10)
        q.put(("ok", ran))
    except BaseException as e:
        q.put((f"{type(e).__name__}: {e}", []))


def test_queued_trials_start_once_each_on_sqlite(tmp_path):
    """SQLite ignores SELECT ... FOR UPDATE: without the storage's lock, several processes
    pop the same WAITING trial (and fail telling it twice)."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    study = optuna.create_study(study_name="queue", storage=make_storage(url))
    for i in range(40):
        study.enqueue_trial({"x": float(i)})
    results = _at_once(_pop_waiting, [(url,)] * 4)
    assert [r[0] for r in results] == ["ok"] * 4
    ran = sorted(n for _, r in results for n in r)
    assert ran == list(range(40))


@pytest.fixture
def fresh_pg(pg_url: str) -> Iterator[str]:
    yield from fresh_database(pg_url)


def _many_open_a_fresh_database(url: str) -> None:
    """4 processes open a fresh database at one instant and run 5 trials each: all of them
    succeed, 20 trials complete, numbered once each."""
    results = _race(url, "race", procs=4, n=5)
    assert results == ["ok"] * 4
    study = optuna.load_study(study_name="race", storage=url)
    assert len(study.trials) == 20
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert_numbers_unique(study)


def _cap_is_exact(url: str) -> None:
    """4 processes racing for a cap of 23 trials (--max-trials): exactly 23."""
    results = _race(url, "cap", procs=4, n=100, max_trials=23)
    assert results == ["ok"] * 4
    study = optuna.load_study(study_name="cap", storage=url)
    assert len(study.trials) == 23
    assert_numbers_unique(study)


def test_fresh_sqlite_file_opened_by_many_processes_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    _many_open_a_fresh_database(url)


@pytest.mark.postgres
def test_fresh_postgres_database_opened_by_many_processes_at_once(fresh_pg):
    _many_open_a_fresh_database(fresh_pg)


def _open_spec(url: str, data: str, barrier: Any, q: Any) -> None:
    """One process: open the default study for the data fingerprint `data` at the
    barrier's instant."""
    try:
        from search.config.schema import build_config
        from search.study.create import IncompatibleStudy, open_study

        cfg = build_config(None, cpu=True)
        storage = make_storage(url, heartbeat_interval=None)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        sampler, pruner = optuna.samplers.RandomSampler(), optuna.pruners.NopPruner()
        barrier.wait()
        try:
            open_study(storage, cfg, data, sampler, pruner)
            q.put(("opened", data))
        except IncompatibleStudy as e:
            # refused by what the recorded settings say, which are there with the spec
            q.put(("refused" if "were not recorded" not in str(e) else str(e), data))
    except BaseException as e:
        q.put((f"{type(e).__name__}: {e}", data))


def _two_specs_at_once(url: str) -> None:
    """Processes of two data files make one new study in the same instant: those of the
    file recorded open it, the others are refused (none mixes its trials in), and the
    queued configurations are queued once."""
    from search.config.schema import build_config

    for _ in range(3):  # the two used to both record their spec most of the time
        results = _at_once(_open_spec, [(url, d) for d in "abab"])
        assert {r for r, _ in results} <= {"opened", "refused"}, results
        opened = {h for r, h in results if r == "opened"}
        assert len(opened) == 1, results
        study = optuna.load_study(study_name="sp500-lstm", storage=url)
        assert study.user_attrs["spec"]["data_fingerprint"] == opened.pop()
        cfg = build_config(None, cpu=True)
        queued = [e for e in cfg.search.enqueue if cfg.space.searched(e)]
        assert len(study.get_trials(states=(TrialState.WAITING,))) == len(queued)
        optuna.delete_study(study_name="sp500-lstm", storage=url)


def test_two_settings_making_one_study_at_once_sqlite(tmp_path):
    _two_specs_at_once(f"sqlite:///{tmp_path / 'spec.db'}")


@pytest.mark.postgres
def test_two_settings_making_one_study_at_once_postgres(fresh_pg):
    _two_specs_at_once(fresh_pg)


def test_trial_cap_is_exact_under_contention_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'cap.db'}"
    _cap_is_exact(url)


@pytest.mark.postgres
def test_trial_cap_is_exact_under_contention_postgres(fresh_pg):
    _cap_is_exact(fresh_pg)


# ------------------------------------------------------------------ the password is never written


@pytest.mark.postgres
def test_password_never_written(pg_url, tmp_path, monkeypatch, capfd):
    """A URL with a password (the trust-auth test server accepts any): nothing optuna-run
    prints or writes holds it: stdout, stderr, export JSON, trials CSV, study attrs."""
    url = make_url(pg_url).set(password=SECRET).render_as_string(hide_password=False)
    assert SECRET in url
    name = unique_name("pw")
    config = study_toml(tmp_path, name, data=tiny_panel(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPTUNA_STORAGE", url)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        assert cli_main(["--config", str(config), "--n-trials", "3", "-q"]) == 0
        best, trials = tmp_path / "best.json", tmp_path / "trials.csv"
        argv = ["export", "--study-name", name, "--out", str(best), "--trials", str(trials)]
        assert cli_main(argv) == 0
        assert cli_main(["export", "--study-name", "no-such-study", "--out", "x.json"]) == 2
        assert cli_main(["--storage", url.replace("/test", "/nodb_x"), "--config", str(config)])
        out, err = capfd.readouterr()
        assert "postgres:***@127.0.0.1" in err
        assert SECRET not in out and SECRET not in err
        assert SECRET not in best.read_text() and SECRET not in trials.read_text()
        study = optuna.load_study(study_name=name, storage=url)
        assert SECRET not in json.dumps(study.user_attrs, default=str)
        system = study._storage.get_study_system_attrs(study._study_id)
        assert SECRET not in json.dumps(system, default=str)
        for t in study.trials:
            assert SECRET not in json.dumps([t.user_attrs, t.system_attrs], default=str)
        written = [p for p in Path(tmp_path).rglob("*") if p.is_file()]
        assert all(SECRET.encode() not in p.read_bytes() for p in written)
    finally:
        optuna.delete_study(study_name=name, storage=url)


# ------------------------------------------------------------------ batched user attrs


def _batched_attrs(url: str) -> None:
    storage = make_storage(url, heartbeat_interval=None)
    study = optuna.create_study(study_name=unique_name("attrs"), storage=storage)
    commits: list[int] = []
    engine = storage._backend.engine

    def count(conn: Any) -> None:
        commits.append(1)

    def count_alone(conn: Any, *args: Any) -> None:
        # a statement that commits alone (PostgreSQL's one-statement writes)
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            commits.append(1)

    trial = study.ask()
    attrs = {f"k{i}": i for i in range(20)} | {"nested": [1.5, None], "text": "x"}
    event.listen(engine, "commit", count)
    event.listen(engine, "before_cursor_execute", count_alone)
    trial.set_user_attr("one", 1)  # Optuna's way: a transaction per key
    assert len(commits) == 1
    set_user_attrs(trial, attrs)
    event.remove(engine, "commit", count)
    event.remove(engine, "before_cursor_execute", count_alone)
    assert len(commits) == 2  # the 22 keys in one transaction
    attrs = {"one": 1} | attrs
    assert trial.user_attrs == attrs  # the running trial sees them at once
    study.tell(trial, 1.0)
    again = optuna.load_study(study_name=study.study_name, storage=url)
    assert again.trials[0].user_attrs == attrs
    # a finished trial refuses them, as it refuses one
    with pytest.raises(RuntimeError):
        storage.set_trial_user_attrs(trial._trial_id, {"late": 1})
    storage.close()


@fast_only
def test_user_attrs_written_in_one_transaction_sqlite(tmp_path):
    _batched_attrs(f"sqlite:///{tmp_path / 'attrs.db'}")


@fast_only
@pytest.mark.postgres
def test_user_attrs_written_in_one_transaction_postgres(fresh_pg):
    _batched_attrs(fresh_pg)


@fast_only
@pytest.mark.postgres
def test_running_trial_writes_skip_the_fsync_but_its_end_does_not(fresh_pg):
    """Reports, params and user attrs of a running trial commit with synchronous_commit off;
    the transaction that finishes the trial commits synchronously (it flushes them too)."""
    storage = make_storage(fresh_pg, heartbeat_interval=None)
    study = optuna.create_study(study_name=unique_name("sync"), storage=storage)
    engine = storage._backend.engine
    txns: list[list[str]] = [[]]

    def statement(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        words = set(sql.upper().split()) & {"INSERT", "UPDATE"}
        kind = sorted(words) + (["ASYNC"] if "synchronous_commit" in sql else [])
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            txns.insert(-1, kind)  # one statement that commits alone
        else:
            txns[-1].extend(kind)

    def commit(conn: Any) -> None:
        txns.append([])

    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # the study knows x
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.report(0.5, 1)
    trial.set_user_attr("k", 1)
    study.tell(trial, 0.5)
    event.remove(engine, "before_cursor_execute", statement)
    event.remove(engine, "commit", commit)
    writes = [t for t in txns if any(s in ("INSERT", "UPDATE") for s in t)]
    asynchronous = [t for t in writes if "ASYNC" in t]
    synchronous = [t for t in writes if t not in asynchronous]
    assert len(asynchronous) == 3, txns  # the param, the report, the user attr
    assert any("UPDATE" in t for t in synchronous), txns  # the state change: flushed
    again = optuna.load_study(study_name=study.study_name, storage=fresh_pg)
    t = again.trials[-1]
    assert (t.params, t.intermediate_values, t.user_attrs["k"]) == (
        {"x": trial.params["x"]},
        {1: 0.5},
        1,
    )
    storage.close()


# ------------------------------------------------------------------ trials that never beat


def _orphans_go_stale(url: str) -> None:
    """A trial whose worker dies (or loses the database) after creating or starting it,
    before Optuna's heartbeat thread records anything, is still failed and re-run: its
    first heartbeat is written with it."""
    storage = make_storage(url, heartbeat_interval=1, grace_period=2, max_retry=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental heartbeat; ask outside optimize
        study = optuna.create_study(study_name=unique_name("orphan"), storage=storage)
        study.enqueue_trial({"x": 0.25})
        space = {"x": optuna.distributions.FloatDistribution(0, 1)}
        queued = study.ask(space)  # the WAITING trial, started
        created = study.ask(space)  # a new trial
    # No heartbeat thread ever ran for them; the worker "died" here.
    again = optuna.load_study(study_name=study.study_name, storage=url)
    running = [t.number for t in again.get_trials(states=(TrialState.RUNNING,))]
    assert running == [queued.number, created.number]
    time.sleep(3.5)  # past the grace period
    fail_stale(study)
    trials = optuna.load_study(study_name=study.study_name, storage=url).get_trials()
    by_number = {t.number: t for t in trials}
    assert by_number[queued.number].state == TrialState.FAIL
    assert by_number[created.number].state == TrialState.FAIL
    retries = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs["failed_trial"] for t in retries) == running
    assert {t.params["x"] for t in retries} == {0.25, created.params["x"]}
    storage.close()


@fast_only
def test_trial_without_a_heartbeat_thread_goes_stale_sqlite(tmp_path):
    _orphans_go_stale(f"sqlite:///{tmp_path / 'orphan.db'}")


@fast_only
@pytest.mark.postgres
def test_trial_without_a_heartbeat_thread_goes_stale_postgres(fresh_pg):
    _orphans_go_stale(fresh_pg)


def _retry_keeps_its_place(url: str) -> None:
    """In a capped study (--max-trials 3), a dead worker's trial failed by the heartbeat
    check hands its place to its retry, not to a new trial: with 1 COMPLETE, 1 RUNNING and
    the retry WAITING, a new trial is refused and the retry starts. (Were the new trial
    let in, the retry could never start: the study would end with it WAITING.)"""
    storage = make_storage(url, heartbeat_interval=1, grace_period=2, max_retry=2, max_trials=3)
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(study_name=unique_name("keep"), storage=storage)
        done = study.ask(space)
        study.tell(done, 1.0)
        dead = study.ask(space)  # its worker dies: no heartbeat after the first
        time.sleep(3.5)  # past the grace period
        live = study.ask(space)  # the third place
        storage.record_heartbeat(live._trial_id)
        assert fail_stale(study) == [dead.number]  # the ones it failed, for the run to say
    trials = optuna.load_study(study_name=study.study_name, storage=url).get_trials()
    states = {t.number: t.state for t in trials}
    assert states[dead.number] == TrialState.FAIL and states[live.number] == TrialState.RUNNING
    (retry,) = [t for t in trials if t.state == TrialState.WAITING]
    assert retry.params == dead.params
    with pytest.raises(StudyFull, match=r"3 finished, running or queued trials \(--max-trials 3\)"):
        storage.create_new_trial(study._study_id)  # a new trial: no place for it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = study.ask(space)  # the retry, which has a place
    assert started.number == retry.number and started.params == dead.params
    study.tell(started, 2.0)
    study.tell(live, 3.0)
    trials = optuna.load_study(study_name=study.study_name, storage=url).get_trials()
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"]
    storage.close()


def test_a_retry_starts_without_the_failed_runs_reason(tmp_path):
    """On either path (the fast one, and Optuna's own with OPTUNA_RUN_STOCK_STORAGE=1): a
    stale trial's retry keeps its params and user attrs, not how the failed run ended."""
    url = f"sqlite:///{tmp_path / 'why.db'}"
    storage = make_storage(url, heartbeat_interval=1, grace_period=2, max_retry=2)
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(study_name=unique_name("why"), storage=storage)
        dead = study.ask(space)
        storage.record_heartbeat(dead._trial_id)  # its one beat before it died
        dead.set_user_attr("worker", "host:1")
        dead.set_user_attr("fail_reason", "interrupted (SIGINT/SIGTERM)")
        time.sleep(3.5)  # past the grace period
        fail_stale(study)
    trials = optuna.load_study(study_name=study.study_name, storage=url).get_trials()
    (retry,) = [t for t in trials if t.state == TrialState.WAITING]
    assert retry.params == dead.params and retry.user_attrs == {"worker": "host:1"}
    assert trials[dead.number].user_attrs["fail_reason"] == "interrupted (SIGINT/SIGTERM)"
    storage.close()


@fast_only
def test_a_retry_keeps_its_place_in_a_capped_study_sqlite(tmp_path):
    _retry_keeps_its_place(f"sqlite:///{tmp_path / 'keep.db'}")


@fast_only
@pytest.mark.postgres
def test_a_retry_keeps_its_place_in_a_capped_study_postgres(fresh_pg):
    _retry_keeps_its_place(fresh_pg)


@fast_only
def test_first_thread_heartbeat_is_not_written_twice(tmp_path):
    """The heartbeat written with the trial stands for the heartbeat thread's first beat,
    which follows it at once; every later beat is written."""
    url = f"sqlite:///{tmp_path / 'beats.db'}"
    storage = make_storage(url, heartbeat_interval=2, grace_period=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(study_name="beats", storage=storage)
        trial = study.ask()
    engine = storage._backend.engine
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    storage.record_heartbeat(trial._trial_id)  # the thread's first beat: already written
    assert commits == []
    storage.record_heartbeat(trial._trial_id)  # the next one
    assert commits == [1]
    storage.close()


# ------------------------------------------------------------------ the same study as Optuna's


def _mixed(trial: optuna.Trial) -> float:
    """Every kind of write: params of each distribution, reports, attrs, and every end."""
    x = trial.suggest_float("x", -2.0, 2.0)
    n = trial.suggest_int("n", 1, 5, log=True)
    c = trial.suggest_categorical("c", ["a", "b", None])
    trial.set_user_attr("tag", {"c": c, "n": n})
    trial.set_user_attr("tag", [n, x])  # overwritten
    for step in range(4):
        trial.report(x * x + 1.0 / (step + 1), step)
    trial.report(float("inf") if n == 2 else -1.0, 1)  # a step written again
    if trial.number % 4 == 1:
        raise optuna.TrialPruned()
    if trial.number % 4 == 2:
        raise ValueError("a failing trial")
    return float("-inf") if trial.number % 4 == 3 else x - n


def _stored(url: str, name: str) -> list[tuple[Any, ...]]:
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    now = datetime.now()
    for t in trials:
        # read back as local time, as Optuna stores it (naive UTC) whatever the time zone
        assert t.datetime_start is not None and abs(t.datetime_start - now) < timedelta(minutes=5)
        if t.state.is_finished():
            assert t.datetime_complete is not None and t.datetime_complete >= t.datetime_start
            assert abs(t.datetime_complete - now) < timedelta(minutes=5)
    return [
        (
            t.number,
            t.state,
            t.values,
            t.params,
            t.distributions,
            t.intermediate_values,
            t.user_attrs,
            {k: v for k, v in t.system_attrs.items() if not k.startswith("fail")},
        )
        for t in trials
    ]


def _same_study_as_optuna(url: str) -> None:
    names = {"stock": unique_name("stock"), "ours": unique_name("ours")}
    for mode, name in names.items():
        storage: Any = url if mode == "stock" else make_storage(url, heartbeat_interval=5)
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=4),
            pruner=optuna.pruners.NopPruner(),
        )
        study.enqueue_trial({"x": 0.5, "n": 2, "c": "b"})  # a WAITING trial, started
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.optimize(_mixed, n_trials=14, catch=(ValueError,))
        if mode == "ours":
            storage.close()
    stock, ours = _stored(url, names["stock"]), _stored(url, names["ours"])
    assert [t[1] for t in ours].count(TrialState.FAIL) == 3
    assert ours == stock


@pytest.fixture(params=["UTC", "America/New_York", "Asia/Tokyo"])
def local_zone(request, monkeypatch) -> Iterator[str]:
    """The process's local time zone (trial times are stored as naive UTC)."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_study_stored_as_optuna_stores_it_sqlite(tmp_path, local_zone):
    _same_study_as_optuna(f"sqlite:///{tmp_path / 'same.db'}")


@pytest.mark.postgres
def test_study_stored_as_optuna_stores_it_postgres(fresh_pg, local_zone):
    _same_study_as_optuna(fresh_pg)


def test_a_param_written_twice_is_ignored_as_optuna_does(tmp_path):
    """A write retried after its commit's reply was lost writes the param again: ignored,
    as Optuna's own write ignores it, not an error that would fail the trial."""
    storage = make_storage(f"sqlite:///{tmp_path / 'p.db'}", heartbeat_interval=None)
    study = optuna.create_study(study_name="p", storage=storage)
    dist = optuna.distributions.FloatDistribution(0, 1)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # the study knows x
    trial = study.ask()
    backend = storage._backend
    for _ in range(2):
        backend._set_trial_param(trial._trial_id, "x", 0.25, dist, dist)
    assert backend.get_trial(trial._trial_id).params == {"x": 0.25}
    storage.close()


@pytest.mark.postgres
def test_connections_closed_by_the_server_are_replaced_at_once(
    fresh_pg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pool does not ping before each use: a pooled connection the server has closed
    (a restart, an idle timeout, an administrator) fails on its first use, and the storage
    call is made again at once on a fresh connection, without a wait or a message; nothing
    is written twice."""
    from sqlalchemy import create_engine, text

    storage = make_storage(fresh_pg, heartbeat_interval=None)
    study = optuna.create_study(study_name=unique_name("stale"), storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.report(0.1, 0)
    database = make_url(fresh_pg).database
    admin = create_engine(make_url(fresh_pg).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as con:
        killed = con.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": database},
        ).scalar_one()
    admin.dispose()
    assert killed >= 1  # the storage's pooled connections
    t0 = time.monotonic()
    trial.report(0.2, 1)  # on a dead connection first
    trial.set_user_attr("k", 1)
    study.tell(trial, 0.3)
    assert time.monotonic() - t0 < 1.0  # no back-off wait
    assert "unreachable" not in capsys.readouterr().err
    again = optuna.load_study(study_name=study.study_name, storage=fresh_pg).trials[-1]
    assert (again.state, again.value, again.intermediate_values) == (
        TrialState.COMPLETE,
        0.3,
        {0: 0.1, 1: 0.2},
    )
    assert again.user_attrs == {"k": 1}
    storage.close()


def _lost_end_reply(url: str) -> None:
    """A trial's end commits, then the connection drops before the reply arrives (here:
    the error raised right after the commit): the storage call is made again and finds the
    trial already ended by its own first try; it succeeds instead of refusing a finished
    trial (which would stop the worker), and nothing is written twice."""
    from sqlalchemy.exc import OperationalError

    storage = make_storage(url, heartbeat_interval=None)
    backend = storage._backend
    study = optuna.create_study(study_name=unique_name("lost"), storage=storage)
    trial = study.ask()
    trial.report(0.25, 0)
    real = backend._ended_now
    drops = []

    def drop_after_commit(trial_id: int, done: datetime) -> None:
        if not drops:
            drops.append(trial_id)
            raise OperationalError(
                "COMMIT", {}, Exception("server closed the connection"), connection_invalidated=True
            )
        real(trial_id, done)

    backend._ended_now = drop_after_commit
    study.tell(trial, 0.5)
    assert drops == [trial._trial_id]
    del backend._ended_now
    again = optuna.load_study(study_name=study.study_name, storage=url).trials
    assert [(t.state, t.value, t.intermediate_values) for t in again] == [
        (TrialState.COMPLETE, 0.5, {0: 0.25})
    ]
    # a second, different end of that trial is still refused
    with pytest.raises(RuntimeError):
        backend.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    storage.close()


@fast_only
def test_an_end_retried_after_its_reply_was_lost_sqlite(tmp_path):
    _lost_end_reply(f"sqlite:///{tmp_path / 'lost.db'}")


@fast_only
@pytest.mark.postgres
def test_an_end_retried_after_its_reply_was_lost_postgres(fresh_pg):
    _lost_end_reply(fresh_pg)


def test_a_heartbeat_inside_another_call_is_retried_by_that_call(capsys) -> None:
    """The proxy's servicer records a heartbeat inside its set_trial_system_attr: a
    connection lost once there is retried by that outer call and the beat written, not
    dropped at once with a 'still unreachable' line."""
    import psycopg

    from search.storage.common import HEARTBEAT_ATTR
    from search.storage.retry import with_retries

    class Served(optuna.storages.RDBStorage):
        reconnect_s = 5.0
        display = display_url = "postgresql+psycopg://u:***@db/optuna"
        fails = 1
        written: list[int] = []

        def record_heartbeat(self, trial_id: int) -> None:
            if self.fails:
                self.fails -= 1
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            self.written.append(trial_id)

        def set_trial_system_attr(self, trial_id: int, key: str, value: object) -> None:
            if key == HEARTBEAT_ATTR:
                self.record_heartbeat(trial_id)

    served = with_retries("record_heartbeat")(Served).__new__(Served)
    served.set_trial_system_attr(7, HEARTBEAT_ATTR, None)
    assert served.written == [7]
    assert "still unreachable" not in capsys.readouterr().err


def test_a_heartbeat_outlasting_the_wait_says_so_and_beats_again(capsys) -> None:
    """A storage unreachable for longer than the retry wait: the heartbeat call says so in
    one line and returns, so Optuna's heartbeat thread (which ends at its first error, with a
    traceback) keeps beating and writes the next heartbeat once the storage is back."""
    import psycopg

    from search.storage.retry import with_retries

    class Beats(optuna.storages.RDBStorage):
        reconnect_s = 0.5
        display = display_url = "postgresql+psycopg://u:***@db/optuna"
        down = True
        written: list[int] = []

        def record_heartbeat(self, trial_id: int) -> None:
            if self.down:
                raise psycopg.OperationalError("connection refused")
            self.written.append(trial_id)

    beats = with_retries("record_heartbeat")(Beats).__new__(Beats)
    beats.record_heartbeat(7)  # it raised after the wait, ending the heartbeat thread
    err = capsys.readouterr().err
    assert "Traceback" not in err and "(connection refused); the heartbeat's retry 1 in" in err
    said = "optuna-run: storage postgresql+psycopg://u:***@db/optuna still unreachable "
    said += "(connection refused); the heartbeat of a running trial was not written"
    assert err.rstrip().splitlines()[-1].startswith(said), err
    beats.down = False
    beats.record_heartbeat(7)
    assert beats.written == [7]


# ------------------------------------------------------------------ MySQL / MariaDB


@pytest.fixture
def fresh_mysql(mysql_url: str) -> Iterator[str]:
    yield from fresh_database(mysql_url)


@pytest.mark.mysql
def test_fresh_mysql_database_opened_by_many_processes_at_once(fresh_mysql):
    """Schema creation under the server's named lock: every process of a fresh database
    gets its study and its trials."""
    _many_open_a_fresh_database(fresh_mysql)


@pytest.mark.mysql
def test_trial_cap_is_exact_under_contention_mysql(fresh_mysql):
    """--max-trials on MySQL: the count and the new trial under one named lock (GET_LOCK),
    so four workers racing for the last places never overshoot."""
    _cap_is_exact(fresh_mysql)


@pytest.mark.mysql
def test_two_settings_making_one_study_at_once_mysql(fresh_mysql):
    _two_specs_at_once(fresh_mysql)


@fast_only
@pytest.mark.mysql
def test_a_retry_keeps_its_place_in_a_capped_study_mysql(fresh_mysql):
    _retry_keeps_its_place(fresh_mysql)


@pytest.mark.mysql
def test_study_stored_as_optuna_stores_it_mysql(fresh_mysql):
    _same_study_as_optuna(fresh_mysql)
