"""Storage URLs -> Optuna RDB storages: SQLite tuned for several local writers, PostgreSQL
for many machines; heartbeats so a dead worker's trial is failed and retried. All storage
set-up lives here. Passwords never leave this module unmasked.

Races between processes are closed with locks rather than left to chance: the schema of a
fresh database is created by one process at a time, and with `max_trials` the check "does
the study have room?" and the start of the trial are one step (a PostgreSQL advisory lock,
or a lock file beside the SQLite file), so concurrent workers on any machine never start
more trials than asked. Journal storages are not offered: they have no heartbeat, so a dead
worker's trial would stay RUNNING for ever.

A database that goes away for a while (a PostgreSQL restart, a fail-over) does not end the
workers: every storage call that fails for want of a connection is retried with back-off
for up to `reconnect_s` seconds, with a line on stderr (password masked) at each wait. A
trial whose heartbeat went stale meanwhile is failed and re-run by the heartbeat; its own
worker notices at its next report and moves on (see search/runner.py).

`grpc://HOST:PORT` is Optuna's gRPC storage proxy (`optuna-run proxy`, search/proxy.py): the
workers hold no database connection; the proxy does, for all of them. Heartbeats travel
through it as a reserved trial system attr that the proxy's storage turns into a heartbeat
row; the proxy fails stale trials itself, and it enforces the trial cap (`optuna-run proxy
--max-trials`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import re
import sqlite3
import sys
import threading
import time
import warnings
from collections.abc import Callable, Container, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import optuna
from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
)
from optuna.storages import GrpcStorageProxy, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages._rdb import models as rdb_models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import bindparam, create_engine, event, func, select, text, true
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.pool import NullPool

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

DEFAULT_STORAGE = "sqlite:///studies/optuna.db"
ENV_VAR = "OPTUNA_STORAGE"
SQLITE_TIMEOUT_S = 120
SCHEMES = ("sqlite", "postgresql", "mysql", "grpc")
RECONNECT_S = 120.0
# A worker behind the gRPC proxy records its heartbeat as this trial system attr; the
# proxy's storage writes a heartbeat row instead of storing it.
HEARTBEAT_ATTR = "optuna_run:heartbeat"
# PostgreSQL advisory locks of this service: (LOCK_CLASS, 0) guards schema creation,
# (LOCK_CLASS, study_id) the start of a trial in a study with a trial cap.
LOCK_CLASS = 0x4F505452
SETUP_KEY = 0
CLAIMED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
PASSWORD_KEYS = ("password", "passwd", "pwd")
TRANSIENT = (
    "locked",
    "unique",
    "duplicate",
    "already exists",
    "deadlock",
    "concurrently",
    "could not serialize",
)


class StorageError(RuntimeError):
    """A storage URL that cannot be used; the message never holds a password."""


class StudyFull(RuntimeError):
    """The study holds `max_trials` COMPLETE, PRUNED or RUNNING trials: start no other."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


# ------------------------------------------------------------ waiting out a lost connection


def _disconnected(e: BaseException) -> bool:
    """Whether `e` (or what caused it) says the database or the proxy cannot be reached, as
    opposed to an error a retry would only repeat."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        mod = type(x).__module__
        if getattr(x, "connection_invalidated", False):
            return True
        if mod.startswith("psycopg") and type(x).__name__ in (
            "OperationalError",
            "InterfaceError",
            "AdminShutdown",
            "CannotConnectNow",
            "ConnectionFailure",
            "ConnectionException",
            "SqlclientUnableToEstablishSqlconnection",
        ):
            return True
        if mod.startswith("grpc") and hasattr(x, "code"):
            try:
                return str(x.code()).endswith("UNAVAILABLE")
            except Exception:  # pragma: no cover - an RpcError without a status
                return False
        todo += [x.__cause__, x.__context__, getattr(x, "orig", None)]
    return False


_depth = threading.local()


def _stale_connection(e: BaseException) -> bool:
    """A pooled connection found dead on its first use (the server restarted since, or
    closed it): SQLAlchemy has discarded the pool's connections, so the next try opens a
    fresh one (the pool does not ping before each use: this retry does that job)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:  # Optuna re-raises it as its own error
        seen.add(id(e))
        if isinstance(e, DBAPIError):
            return bool(e.connection_invalidated)
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method` retried while the storage is unreachable, for up to `self.reconnect_s`
    seconds in all, with a line on stderr at each wait (the first retry after a stale pooled
    connection is made at once, silently). Only the outermost storage call of a thread
    retries (a call made inside another one fails through to it)."""

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_depth, "n", 0):
            return method(self, *args, **kwargs)
        deadline = time.monotonic() + self.reconnect_s
        attempt = 0
        fresh = False
        while True:
            _depth.n = 1
            try:
                return method(self, *args, **kwargs)
            except Exception as e:
                if not fresh and _stale_connection(e):
                    fresh = True
                    continue
                left = deadline - time.monotonic()
                if not _disconnected(e) or left <= 0:
                    raise
                attempt += 1
                pause = min(2.0 ** (attempt - 1), 10.0, max(left, 0.1))
                first = (str(e.__cause__ or e).strip().splitlines() or [type(e).__name__])[0]
                print(
                    f"optuna-run: storage {self.display} unreachable "
                    f"({scrub(first, self.display_url)}); retry {attempt} in {pause:.0f}s, "
                    f"giving up in {left:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
                time.sleep(pause)
            finally:
                _depth.n = 0

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


# The storage calls that reach the database (or the proxy), retried when it is unreachable.
STORAGE_CALLS = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "_create_new_trial",
    "set_trial_param",
    "_set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_user_attrs",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "_get_trials",
    "get_best_trial",
    "_get_best_trial_id",
    "get_n_trials",
    "record_heartbeat",
    "_get_stale_trial_ids",
    "fail_stale_and_retry",
    "count",
    "completed_at",
)


def _with_retries(cls: type) -> type:
    for name in STORAGE_CALLS:
        if hasattr(cls, name):
            setattr(cls, name, _retrying(getattr(cls, name)))
    return cls


def resolve_url(flag: str | None) -> str:
    """--storage wins over $OPTUNA_STORAGE, which wins over the default SQLite file.

    A relative SQLite path is made absolute against the current directory;
    `postgresql://` and `postgres://` mean the psycopg 3 driver.
    """
    url = flag or os.environ.get(ENV_VAR) or DEFAULT_STORAGE
    for alias in ("postgresql://", "postgres://"):
        if url.startswith(alias):
            url = "postgresql+psycopg://" + url[len(alias) :]
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url[len("sqlite:///") :]
        if rel and not rel.startswith(":memory:"):
            url = "sqlite:///" + str(Path(rel).resolve())
    return url


def _raw_secrets(url: str) -> list[str]:
    """Passwords as written in the URL (maybe %-encoded), found without parsing it."""
    found = re.findall(r"://[^:/@]*:([^@/]*)@", url)
    found += re.findall(r"[?&](?:password|passwd|pwd)=([^&]*)", url, flags=re.IGNORECASE)
    return found + [unquote(s) for s in found]


def _secrets(url: str) -> list[str]:
    out = _raw_secrets(url)
    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        return [s for s in out if s]
    if u.password:
        out.append(str(u.password))
    for k, v in u.query.items():
        if k.lower() in PASSWORD_KEYS:
            out.extend([v] if isinstance(v, str) else list(v))
    return sorted({s for s in out if s}, key=len, reverse=True)


def mask(url: str) -> str:
    """The URL with any password (user info or `?password=` query) replaced by ***."""
    try:
        u = make_url(url)
        hidden = {k: "***" for k in u.query if k.lower() in PASSWORD_KEYS}
        if hidden:
            u = u.update_query_dict(hidden)
        return u.render_as_string(hide_password=True).replace("=%2A%2A%2A", "=***")
    except (ArgumentError, ValueError):
        out = re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)
        return re.sub(r"([?&](?:password|passwd|pwd)=)[^&]*", r"\1***", out, flags=re.IGNORECASE)


def scrub(text: str, url: str) -> str:
    """`text` with the URL and its password (plain or %-encoded) masked."""
    out = text.replace(url, mask(url))
    for secret in _secrets(url):
        out = out.replace(secret, "***")
    return out


def describe(url: str) -> str:
    """Where the study lives, for people: the SQLite file's absolute path, or the masked URL."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :]
    return mask(url)


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0].lower() if "://" in url else ""


def _sqlite_file(url: str) -> str | None:
    """The SQLite database file of `url`, or None for an in-memory database or another URL."""
    if _scheme(url) != "sqlite":
        return None
    db = make_url(url).database
    return None if not db or db.startswith(":memory:") else db


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """An exclusive lock shared by every process of this machine that uses `path`."""
    if fcntl is None:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _pg_lock(engine: Engine, key: int) -> Iterator[None]:
    """A PostgreSQL advisory lock held for the block; released when its transaction ends,
    so a worker that dies holding it frees it with its connection."""
    with engine.connect() as con:
        con.execute(text("SELECT pg_advisory_xact_lock(:c, :k)"), {"c": LOCK_CLASS, "k": key})
        try:
            yield
        finally:
            con.rollback()


@contextlib.contextmanager
def _setup_lock(url: str) -> Iterator[None]:
    """Serialise schema creation on a fresh database across processes and machines."""
    path = _sqlite_file(url)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(path + "-lock"):
            yield
    elif _scheme(url) == "postgresql":
        engine = create_engine(url, poolclass=NullPool)
        try:
            with _pg_lock(engine, SETUP_KEY):
                yield
        finally:
            engine.dispose()
    else:
        yield


def _prepare_sqlite(path: str) -> None:
    # WAL is a property of the file: readers never block the writer, writers queue.
    con = sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def _on_sqlite_connect(dbapi_con: Any, _: Any) -> None:
    dbapi_con.execute("PRAGMA synchronous=NORMAL")
    dbapi_con.execute(f"PRAGMA busy_timeout={SQLITE_TIMEOUT_S * 1000}")


def _to_utc(local: datetime) -> datetime:
    """A naive local time as Optuna's RDB storage stores it: naive UTC."""
    return local.astimezone(timezone.utc).replace(tzinfo=None)


def _from_utc(stored: datetime) -> datetime:
    """A stored naive-UTC time as Optuna reads it back: naive local time."""
    return stored.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)


# INSERT ... ON CONFLICT DO UPDATE by dialect (SQLite >= 3.24 has it)
_UPSERT: dict[str, Callable[..., Any]] = {"postgresql": pg_dialect.insert}
if sqlite3.sqlite_version_info >= (3, 24, 0):
    _UPSERT["sqlite"] = sqlite_dialect.insert


@_with_retries
class ServiceStorage(RDBStorage):
    """An RDBStorage whose trial starts are atomic across processes.

    With `max_trials` set, creating a trial (or starting a WAITING one, e.g. a retry of a
    dead worker's trial) first takes the study's lock, counts its COMPLETE, PRUNED and
    RUNNING trials and raises StudyFull when they reach `max_trials`. On SQLite every state
    change also takes the file lock: SQLite ignores SELECT ... FOR UPDATE, so without it two
    processes could both start the same WAITING trial, or both fail (and retry) one stale
    trial.
    """

    max_trials: int | None = None
    lock_file: str | None = None
    # Write a trial's first heartbeat with its creation or start (see
    # _get_prepared_new_trial): only where every client beats (this service's workers); not
    # behind the proxy, whose clients may be stock Optuna clients without heartbeats.
    beat_on_create = True
    reconnect_s: float = RECONNECT_S
    display = ""
    display_url = ""

    def close(self) -> None:
        self.engine.dispose()

    def _claim(self, study_id: int) -> contextlib.AbstractContextManager[None]:
        if self.lock_file is not None:
            return _file_lock(self.lock_file)
        if self.engine.dialect.name == "postgresql":
            return _pg_lock(self.engine, study_id)
        return contextlib.nullcontext()

    def count(self, study_id: int, states: Sequence[TrialState] = CLAIMED) -> int:
        """Trials of the study in `states` (default COMPLETE, PRUNED, RUNNING), counted in
        the database."""
        t = rdb_models.TrialModel
        query = select(func.count()).select_from(t).where(t.study_id == study_id)
        with self.engine.connect() as con:
            return int(con.execute(query.where(t.state.in_(states))).scalar_one())

    def _check_room(self, study_id: int, queued: bool = False) -> None:
        """StudyFull when the study holds `max_trials` COMPLETE, PRUNED or RUNNING trials;
        with `queued` (a new trial, not a queued one starting), its WAITING trials count
        too: a retry queued for a dead worker's trial keeps that trial's place, and no new
        trial takes it."""
        if self.max_trials is not None:
            n = self.count(study_id, (*CLAIMED, TrialState.WAITING) if queued else CLAIMED)
            if n >= self.max_trials:
                what = "finished, running or queued" if queued else "finished or running"
                raise StudyFull(
                    f"the study holds {n} {what} trials (--max-trials {self.max_trials})",
                    self.max_trials,
                )

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Empty: the stale trials are failed here, each with its retry queued (the
        storage's RetryHeartbeatStaleTrialCallback) under the study's claim, so Optuna's
        fail_stale_trials finds nothing left to do. Optuna fails all, then queues the
        retries: in between, a capped study (--max-trials) would have room that a new trial
        could take, leaving a retry that can never start."""
        self.fail_stale_and_retry(study_id)
        return []

    def fail_stale_and_retry(self, study_id: int) -> list[int]:
        """Fail the study's trials whose heartbeat went stale and queue their retries, all
        while holding the study's claim; the ids of the trials failed."""
        # trial id -> study id: failed here, retry not queued yet (a call cut off between
        # the two leaves it here: the trial is no longer stale, its retry still owed)
        owed: dict[int, int] = self.__dict__.setdefault("_retry_owed", {})
        if not super()._get_stale_trial_ids(study_id) and study_id not in owed.values():
            return []
        retry = self.get_heartbeat_stale_trial_callback()
        failed: list[int] = []
        with self._claim(study_id):
            for trial_id in super()._get_stale_trial_ids(study_id):
                try:
                    if self._set_state(trial_id, TrialState.FAIL, None):
                        failed.append(trial_id)
                        if retry is not None:
                            owed[trial_id] = study_id
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass  # failed by another process meanwhile
            here = [t for t, s in owed.items() if s == study_id]
            if here and retry is not None:
                study = optuna.Study(study_name=self.get_study_name_from_id(study_id), storage=self)
                for trial_id in here:
                    retry(study, copy.deepcopy(self.get_trial(trial_id)))
                    del owed[trial_id]
        return failed

    def completed_at(self, trial_id: int) -> datetime | None:
        """The trial's datetime_complete as Optuna reads it back (naive local time; it is
        stored as naive UTC), as written here when it was."""
        done = self._ended().pop(trial_id, None)
        if done is not None:
            return done
        t = rdb_models.TrialModel.__table__
        with self.engine.connect() as con:
            query = select(t.c.datetime_complete).where(t.c.trial_id == trial_id)
            stored = con.execute(query).scalar_one()
        return None if stored is None else _from_utc(stored)

    def _study_of(self, trial_id: int) -> int:
        t = rdb_models.TrialModel
        with self.engine.connect() as con:
            study_id: Any = con.execute(
                select(t.study_id).where(t.trial_id == trial_id)
            ).scalar_one()
            return int(study_id)

    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        if template_trial is not None or self.max_trials is None:
            return self._new_trial(study_id, template_trial)
        with self._claim(study_id):
            self._check_room(study_id, queued=True)
            return self._new_trial(study_id, template_trial)

    def _new_trial(self, study_id: int, template_trial: FrozenTrial | None) -> FrozenTrial:
        """Optuna's creation of a trial; a plain new one (no template) as SQL Core
        statements in one transaction, as Optuna makes it: the study's row locked, the
        trial inserted, its number = the study's earlier trials, counted under that lock
        (and, on SQLite, under the write lock the insert took); with heartbeats on, its
        first heartbeat too (see _get_prepared_new_trial)."""
        stmts = self._core()
        if stmts is None or template_trial is not None or "new" not in stmts:
            return super()._create_new_trial(study_id, template_trial)
        start = datetime.now()
        with self.engine.begin() as con:
            if con.execute(stmts["lock_study"], {"lock_study_id": study_id}).first() is None:
                raise KeyError(rdb_models.NOT_FOUND_MSG)
            if "g_new" in stmts:  # PostgreSQL: the rest in one statement
                one = stmts["g_new_beat" if self._beats_on_create() else "g_new"]
                args = {"n_study_id": study_id, "n_state": TrialState.RUNNING}
                made = con.execute(one, {**args, "n_start": _to_utc(start)}).one()
                trial_id, number = int(made[0]), int(made[1])
            else:
                new = {
                    "study_id": study_id,
                    "state": TrialState.RUNNING,
                    "datetime_start": _to_utc(start),
                }
                trial_id = int(con.execute(stmts["new"], new).scalar_one())
                before = {"count_study_id": study_id, "count_trial_id": trial_id}
                number = int(con.execute(stmts["count_before"], before).scalar_one())
                con.execute(stmts["number"], {"number_trial_id": trial_id, "number": number})
                if self._beats_on_create():
                    con.execute(stmts["beat"], {"trial_id": trial_id})
        if self._beats_on_create():
            self._beat_written(trial_id)
        return FrozenTrial(
            number=number,
            state=TrialState.RUNNING,
            value=None,
            values=None,
            datetime_start=start,
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={},
            system_attrs={},
            intermediate_values={},
            trial_id=trial_id,
        )

    def _get_prepared_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None, session: Any
    ) -> Any:
        """Optuna's new trial, plus (with heartbeats on) its first heartbeat in the same
        transaction. Optuna records the first heartbeat only once `ask` has returned, and
        never fails a RUNNING trial without one: a worker killed, or cut off from the
        database, between creating a trial and its first heartbeat (a lost commit reply
        makes the retry create a second one) would leave that trial RUNNING forever, and
        a study capped by --max-trials waiting on it. With it, such a trial goes stale
        after the grace period and is failed and re-run like any dead worker's."""
        trial = super()._get_prepared_new_trial(study_id, template_trial, session)
        if self._beats_on_create() and trial.state == TrialState.RUNNING:
            session.add(rdb_models.TrialHeartbeatModel(trial_id=trial.trial_id))
            self._beat_written(int(trial.trial_id))
        return trial

    def _beats_on_create(self) -> bool:
        return bool(self.heartbeat_interval) and self.beat_on_create

    def _beat_at(self) -> dict[int, float]:
        """Trial id -> when this process wrote the trial's heartbeat with its creation or
        start (monotonic); kept until Optuna's heartbeat thread makes its first beat."""
        return self.__dict__.setdefault("_beats", {})

    def _beat_written(self, trial_id: int) -> None:
        """This process just wrote the trial's heartbeat with its creation or start."""
        beats = self._beat_at()
        if len(beats) > 1024:  # trials whose heartbeat thread never started
            beats.clear()
        beats[trial_id] = time.monotonic()

    def record_heartbeat(self, trial_id: int) -> None:
        """Optuna's heartbeat, except the heartbeat thread's first beat when the trial's
        heartbeat was written with its creation or start an instant before (one write a
        trial fewer). Skipped only well within the grace period: the thread's next beat
        comes one interval later, before the trial could go stale."""
        at = self._beat_at().pop(trial_id, None)
        assert self.heartbeat_interval is not None
        grace = self.grace_period or 2 * self.heartbeat_interval
        window = min(self.heartbeat_interval, grace - self.heartbeat_interval) / 2
        if at is not None and time.monotonic() - at < window:
            return
        super().record_heartbeat(trial_id)

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        for key in (
            "_core_stmts",
            "_auto_engine",
            "_beats",
            "_end_times",
            "_ending",
            "_retry_owed",
        ):
            state.pop(key, None)
        return state

    def _core(self) -> dict[str, Any] | None:
        """The SQL Core statements of a running trial's writes, built once per storage
        (building one costs more Python time than running it), executed with parameters;
        None where the dialect has no upsert (Optuna's ORM writes are used there)."""
        built = self.__dict__.get("_core_stmts", False)
        if built is not False:
            return built
        dialect = self.engine.dialect.name
        stmts: dict[str, Any] | None = None
        if dialect in _UPSERT:
            trials = rdb_models.TrialModel.__table__
            cols: list[Any] = [trials.c.state]
            if dialect == "postgresql":
                # See _lock_running: this transaction commits without waiting for the WAL.
                cols.append(func.set_config(text("'synchronous_commit'"), text("'off'"), true()))
            where = trials.c.trial_id == bindparam("lock_trial_id")
            stmts = {
                "lock": select(*cols).where(where).with_for_update(),
                "lock_sync": select(trials.c.state, trials.c.datetime_complete)
                .where(where)
                .with_for_update(),
                "end": trials.update()
                .where(trials.c.trial_id == bindparam("end_trial_id"))
                .values(state=bindparam("state"), datetime_complete=bindparam("datetime_complete")),
            }

            def upsert(model: Any, keys: list[str], updated: list[str]) -> Any:
                table = model.__table__
                insert = _UPSERT[dialect](table)
                return insert.on_conflict_do_update(
                    index_elements=[table.c[k] for k in keys],
                    set_={k: insert.excluded[k] for k in updated},
                )

            stmts["report"] = upsert(
                rdb_models.TrialIntermediateValueModel,
                ["trial_id", "step"],
                ["intermediate_value", "intermediate_value_type"],
            )
            if self.engine.dialect.insert_returning:
                studies = rdb_models.StudyModel.__table__
                study_where = studies.c.study_id == bindparam("lock_study_id")
                stmts["lock_study"] = (
                    select(studies.c.study_id).where(study_where).with_for_update()
                )
                stmts["new"] = trials.insert().returning(trials.c.trial_id)
                stmts["count_before"] = (
                    select(func.count())
                    .select_from(trials)
                    .where(
                        trials.c.study_id == bindparam("count_study_id"),
                        trials.c.trial_id < bindparam("count_trial_id"),
                    )
                )
                stmts["number"] = (
                    trials.update()
                    .where(trials.c.trial_id == bindparam("number_trial_id"))
                    .values(number=bindparam("number"))
                )
                beats = rdb_models.TrialHeartbeatModel.__table__
                stmts["beat"] = beats.insert().values(heartbeat=func.current_timestamp())
            params = rdb_models.TrialParamModel.__table__
            # Optuna ignores a second write of a param (e.g. a write retried after its
            # commit's reply was lost): so does this.
            stmts["param"] = _UPSERT[dialect](params).on_conflict_do_nothing(
                index_elements=[params.c.trial_id, params.c.param_name]
            )
            stmts["values"] = upsert(
                rdb_models.TrialValueModel, ["trial_id", "objective"], ["value", "value_type"]
            )
            for name, model in (
                ("user", rdb_models.TrialUserAttributeModel),
                ("system", rdb_models.TrialSystemAttributeModel),
            ):
                stmts[name] = upsert(model, ["trial_id", "key"], ["value_json"])
            if dialect == "postgresql":
                # (on SQLite, where a round trip is a function call, the one-statement
                # writes measured slower than the transactions: 415 us a report, not 282)
                stmts.update(self._guarded_statements())
        self.__dict__["_core_stmts"] = stmts
        return stmts

    @staticmethod
    def _guarded_statements() -> dict[str, Any]:
        """PostgreSQL: each write of a running trial (report, param, one attr) as one
        statement, run outside a transaction block: the trial's row locked and checked
        RUNNING, the row upserted, the commit not waiting for the WAL flush (as
        _lock_running explains), in one round trip instead of five (BEGIN, lock, write,
        COMMIT and the pool's ping). RETURNING tells whether it wrote: a trial that is not
        RUNNING (finished, missing, or WAITING) writes nothing here and goes the
        transaction's way, which raises Optuna's error or writes. Also a trial's creation
        (after the study's lock) and its end as one statement each."""
        trials = rdb_models.TrialModel.__table__

        def running(name: str, *extra: Any) -> Any:
            """The trial's row, locked, if it is RUNNING (no row otherwise)."""
            return (
                select(trials.c.trial_id.label("tid"), *extra)
                .where(
                    trials.c.trial_id == bindparam("g_trial_id"),
                    trials.c.state == TrialState.RUNNING,
                )
                .with_for_update()
                .cte(name)
            )

        sync_off = func.set_config(text("'synchronous_commit'"), text("'off'"), true())
        live = running("live", sync_off.label("sc"))

        def guarded(model: Any, keys: list[str], updated: list[str] | None) -> Any:
            table = model.__table__
            cols = [c.name for c in table.c if c.name != "trial_id" and not c.primary_key]
            src = select(
                live.c.tid, *[bindparam(c, type_=table.c[c].type) for c in cols]
            ).select_from(live)
            insert = pg_dialect.insert(table).from_select(["trial_id", *cols], src)
            index = [table.c[k] for k in keys]
            if updated is None:
                insert = insert.on_conflict_do_nothing(index_elements=index)
            else:
                insert = insert.on_conflict_do_update(
                    index_elements=index, set_={k: insert.excluded[k] for k in updated}
                )
            return insert.returning(table.c.trial_id)

        writes = {
            "g_report": guarded(
                rdb_models.TrialIntermediateValueModel,
                ["trial_id", "step"],
                ["intermediate_value", "intermediate_value_type"],
            ),
            "g_param": guarded(rdb_models.TrialParamModel, ["trial_id", "param_name"], None),
            "g_user": guarded(
                rdb_models.TrialUserAttributeModel, ["trial_id", "key"], ["value_json"]
            ),
            "g_system": guarded(
                rdb_models.TrialSystemAttributeModel, ["trial_id", "key"], ["value_json"]
            ),
        }
        # A trial's end with one value or none: locked and checked RUNNING, value upserted,
        # state and completion time set; committed synchronously (no set_config here).
        ended = running("ended")
        values = rdb_models.TrialValueModel.__table__
        value_src = select(
            ended.c.tid,
            bindparam("objective", type_=values.c.objective.type),
            bindparam("value", type_=values.c.value.type),
            bindparam("value_type", type_=values.c.value_type.type),
        ).select_from(ended)
        value_insert = pg_dialect.insert(values).from_select(
            ["trial_id", "objective", "value", "value_type"], value_src
        )
        value_upsert = value_insert.on_conflict_do_update(
            index_elements=[values.c.trial_id, values.c.objective],
            set_={k: value_insert.excluded[k] for k in ("value", "value_type")},
        ).cte("upserted")
        end = (
            trials.update()
            .where(trials.c.trial_id == ended.c.tid)
            .values(
                state=bindparam("state", type_=trials.c.state.type),
                datetime_complete=bindparam(
                    "datetime_complete", type_=trials.c.datetime_complete.type
                ),
            )
            .returning(trials.c.trial_id)
        )
        # A new trial once the study's row is locked: inserted with its number (the
        # study's trials so far, all older under that lock) and, with heartbeats on, its
        # first heartbeat, in one statement (the count must come after the lock: a
        # statement's snapshot is taken before it waits for a lock).
        counted = select(
            func.count(),
            bindparam("n_study_id", type_=trials.c.study_id.type),
            bindparam("n_state", type_=trials.c.state.type),
            bindparam("n_start", type_=trials.c.datetime_start.type),
        ).where(trials.c.study_id == bindparam("n_study_id"))
        new = (
            pg_dialect.insert(trials)
            .from_select(["number", "study_id", "state", "datetime_start"], counted)
            .returning(trials.c.trial_id, trials.c.number)
            .cte("new")
        )
        beats = rdb_models.TrialHeartbeatModel.__table__
        beat = (
            beats.insert()
            .from_select(
                ["trial_id", "heartbeat"], select(new.c.trial_id, func.current_timestamp())
            )
            .cte("beat")
        )
        return {
            "g_end": end.add_cte(ended),
            "g_end_value": end.add_cte(ended).add_cte(value_upsert),
            "g_new": select(new.c.trial_id, new.c.number),
            "g_new_beat": select(new.c.trial_id, new.c.number).add_cte(beat),
            **writes,
        }

    def _guarded(self, stmts: dict[str, Any], name: str, row: dict[str, Any]) -> bool:
        """Run the one-statement write `name` (see _guarded_statements) if this dialect has
        it; True if it wrote, False if the caller must take the transaction's way."""
        stmt = stmts.get("g_" + name)
        if stmt is None:
            return False
        with self._auto().connect() as con:
            return con.execute(stmt, {"g_trial_id": row["trial_id"], **row}).first() is not None

    def _auto(self) -> Any:
        """The engine's pool, its connections in autocommit mode (psycopg switches it on
        the client: no round trip): a statement outside a transaction block commits alone."""
        engine = self.__dict__.get("_auto_engine")
        if engine is None:
            engine = self.__dict__["_auto_engine"] = self.engine.execution_options(
                isolation_level="AUTOCOMMIT"
            )
        return engine

    def _lock_running(self, con: Any, trial_id: int) -> None:
        """Lock the trial's row (PostgreSQL) and refuse a missing or finished trial, as
        Optuna's writes do. On PostgreSQL the same statement lets this transaction commit
        without waiting for its WAL to reach the disk (`set_config('synchronous_commit',
        'off', true)`, for this transaction only): used only for what a running trial
        writes (reports, params, attrs). Its end (COMPLETE, PRUNED, FAIL) still commits
        synchronously, which flushes every earlier record of the log with it, so a finished
        trial is durable with everything it wrote; a server crash can lose at most the last
        fraction of a second of a still-running trial's writes, and that trial is failed and
        re-run by the heartbeat."""
        stmts = self._core()
        assert stmts is not None
        row = con.execute(stmts["lock"], {"lock_trial_id": trial_id}).first()
        if row is None:
            raise KeyError(rdb_models.NOT_FOUND_MSG)
        self.check_trial_is_updatable(trial_id, row[0])

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        """Optuna's write (the trial must be unfinished; an existing step is overwritten) as
        two SQL Core statements in one transaction, without the ORM's session, identity map
        and flush: the per-epoch report is the most frequent write of a study."""
        stmts = self._core()
        if stmts is None:
            super().set_trial_intermediate_value(trial_id, step, intermediate_value)
            return
        iv = rdb_models.TrialIntermediateValueModel
        stored, kind = iv.intermediate_value_to_stored_repr(intermediate_value)
        row = {
            "trial_id": trial_id,
            "step": step,
            "intermediate_value": stored,
            "intermediate_value_type": kind,
        }
        if self._guarded(stmts, "report", row):
            return
        with self.engine.begin() as con:
            self._lock_running(con, trial_id)
            con.execute(stmts["report"], row)

    def _set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
        previous_distribution: BaseDistribution | None,
    ) -> None:
        """Optuna's write of a suggested param; once the study's distribution of that param
        is known (the trial cache passes it after the first trial), as SQL Core statements
        in one transaction: the same checks (distribution compatible, trial unfinished), a
        fraction of the ORM's time. The first time, Optuna's own path looks it up."""
        stmts = self._core()
        if previous_distribution is None or stmts is None:
            super()._set_trial_param(
                trial_id, param_name, param_value_internal, distribution, previous_distribution
            )
            return
        check_distribution_compatibility(previous_distribution, distribution)
        row = {
            "trial_id": trial_id,
            "param_name": param_name,
            "param_value": param_value_internal,
            "distribution_json": distribution_to_json(distribution),
        }
        if self._guarded(stmts, "param", row):
            return
        with self.engine.begin() as con:
            self._lock_running(con, trial_id)
            con.execute(stmts["param"], row)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.set_trial_user_attrs(trial_id, {key: value})

    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Several user attrs of a running trial in one transaction (one commit, not one
        per key as `set_trial_user_attr` makes them)."""
        self._set_attrs(rdb_models.TrialUserAttributeModel, trial_id, attrs)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if key == HEARTBEAT_ATTR:  # a heartbeat sent through the gRPC proxy
            self.record_heartbeat(trial_id)
            return
        # e.g. the rung values successive halving and Hyperband store at every rung
        self._set_attrs(rdb_models.TrialSystemAttributeModel, trial_id, {key: value})

    def _set_attrs(self, model: Any, trial_id: int, attrs: dict[str, Any]) -> None:
        """Optuna's attr write (the trial must be unfinished; a key is overwritten) for
        several keys, as SQL Core upserts in one transaction."""
        stmts = self._core()
        if stmts is None:
            with _create_scoped_session(self.scoped_session, True) as session:
                for key, value in attrs.items():
                    self._set_trial_attr_without_commit(session, model, trial_id, key, value)
            return
        if not attrs:
            return
        user = model is rdb_models.TrialUserAttributeModel
        rows = [
            {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()
        ]
        kind = "user" if user else "system"
        if len(rows) == 1 and self._guarded(stmts, kind, rows[0]):
            return
        with self.engine.begin() as con:
            self._lock_running(con, trial_id)
            con.execute(stmts[kind], rows)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        if state == TrialState.RUNNING and self._beats_on_create():
            # A WAITING trial (a retry) about to start: its heartbeat first, for the reason
            # given in _get_prepared_new_trial (harmless if another process starts it).
            super().record_heartbeat(trial_id)
            self._beat_written(trial_id)
        starting = state == TrialState.RUNNING and self.max_trials is not None
        if not starting and self.lock_file is None:
            return self._set_state(trial_id, state, values)
        study_id = self._study_of(trial_id) if starting else 0
        with self._claim(study_id):
            if starting:
                self._check_room(study_id)
            return self._set_state(trial_id, state, values)

    def _set_state(self, trial_id: int, state: TrialState, values: Sequence[float] | None) -> bool:
        """Optuna's state change; a trial's end (COMPLETE, PRUNED, FAIL) as SQL Core
        statements in one transaction, committed synchronously: the row locked, the trial
        checked unfinished, its values upserted, its state and completion time set.

        A retry of the same end (its first try committed, then the connection dropped
        before the reply came) finds the trial in that state with that completion time,
        written by the first try, and succeeds instead of refusing a finished trial."""
        stmts = self._core()
        if stmts is None or not state.is_finished():
            return super().set_trial_state_values(trial_id, state, values)
        done = self._end_time(trial_id, state)
        if (
            "g_end" in stmts
            and len(values or ()) <= 1
            and self._end_running(stmts, trial_id, state, values, done)
        ):
            self._ended_now(trial_id, done)
            return True
        try:
            with self.engine.begin() as con:
                row = con.execute(stmts["lock_sync"], {"lock_trial_id": trial_id}).first()
                if row is None:
                    raise KeyError(rdb_models.NOT_FOUND_MSG)
                if row[0] != state or row[1] != _to_utc(done):  # else: its earlier try's
                    self.check_trial_is_updatable(trial_id, row[0])
                    rows = _value_rows(trial_id, values)
                    if rows:
                        con.execute(stmts["values"], rows)
                    con.execute(
                        stmts["end"],
                        {
                            "end_trial_id": trial_id,
                            "state": state,
                            "datetime_complete": _to_utc(done),
                        },
                    )
        except IntegrityError:
            return False
        self._ended_now(trial_id, done)
        return True

    def _end_running(
        self,
        stmts: dict[str, Any],
        trial_id: int,
        state: TrialState,
        values: Sequence[float] | None,
        done: datetime,
    ) -> bool:
        """PostgreSQL: a RUNNING trial's end as one statement (see _guarded_statements);
        False if the trial was not RUNNING (the transaction's way then says why)."""
        row: dict[str, Any] = {
            "g_trial_id": trial_id,
            "state": state,
            "datetime_complete": _to_utc(done),
        }
        if values:
            row.update(_value_rows(trial_id, values)[0])
        with self._auto().connect() as con:
            stmt = stmts["g_end_value" if values else "g_end"]
            return con.execute(stmt, row).first() is not None

    def _end_time(self, trial_id: int, state: TrialState) -> datetime:
        """The completion time of the trial's end in progress: now, or the one its earlier
        try (to the same state) wrote, so that a retry recognises its own write."""
        pending = self.__dict__.setdefault("_ending", {})
        if len(pending) > 1024:  # ends that failed for good and were never retried
            pending.clear()
        held = pending.get(trial_id)
        if held is not None and held[0] == state:
            return held[1]
        done = datetime.now()
        pending[trial_id] = (state, done)
        return done

    def _ended_now(self, trial_id: int, done: datetime) -> None:
        self.__dict__.setdefault("_ending", {}).pop(trial_id, None)
        ended = self._ended()
        if len(ended) > 1024:  # ends nobody asked for (e.g. stale trials failed here)
            ended.clear()
        ended[trial_id] = done

    def _ended(self) -> dict[int, datetime]:
        """Trial id -> the completion time this process just wrote, until read once."""
        return self.__dict__.setdefault("_end_times", {})


class _HeldTrials:
    """The trials this process runs, held in memory and updated as they are written (params,
    intermediate values, attrs), so that reading them, which Optuna does at every report,
    `should_prune` and suggestion, costs no round trip. Every write still goes to the
    storage first and is checked there: a trial failed by another process's heartbeat check
    refuses the write, as without this.

    Also: a study's trial list is read again when this process changed a trial's state since
    the last read, else at most every `refresh_s` seconds, so other workers' progress is
    seen up to that much later; a worker alone on its study sees exactly what it would see
    without the cache. Mixed in before an Optuna storage class.
    """

    refresh_s = 1.0

    def _held_init(self) -> None:
        self._own: dict[int, FrozenTrial] = {}
        self._own_study: dict[int, int] = {}
        self._read_at: dict[int, float] = {}  # study id -> monotonic time of the last read

    def _fetch_new(self, study_id: int, trial_id: int) -> FrozenTrial:
        raise NotImplementedError

    def _due(self, study_id: int) -> bool:
        last = self._read_at.get(study_id)
        return last is None or time.monotonic() - last >= self.refresh_s

    def _listing(
        self,
        study_id: int,
        trials: dict[int, FrozenTrial],
        states: Container[TrialState] | None,
        deepcopy: bool,
    ) -> list[FrozenTrial]:
        """`trials` (number -> trial) with the held ones put in as they are now."""
        for trial_id, t in tuple(self._own.items()):  # other threads add and remove
            if self._own_study.get(trial_id) == study_id:
                # A snapshot: the held trial changes with the next write (its dicts are
                # replaced, never changed in place); a listing handed out must not.
                trials[t.number] = copy.copy(t)
        # by number (sorting the int keys is several times faster than sorting the trials)
        ordered = map(trials.__getitem__, sorted(trials))
        out = list(ordered) if states is None else [t for t in ordered if t.state in states]
        return copy.deepcopy(out) if deepcopy else out

    def _changed(self, trial_id: int) -> None:
        """A trial's state changed here: read its study's trials at the next listing."""
        sid = self._own_study.get(trial_id)
        if sid is None:
            self._read_at.clear()
        else:
            self._read_at.pop(sid, None)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)  # type: ignore[misc]
        trial = self._fetch_new(study_id, trial_id)
        if trial.state == TrialState.RUNNING:
            self._own[trial_id] = trial
            self._own_study[trial_id] = study_id
        else:
            self._read_at.pop(study_id, None)
        return trial_id

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        held = self._own.get(trial_id)
        try:
            updated = super().set_trial_state_values(trial_id, state, values)  # type: ignore[misc]
        except Exception:
            self._own.pop(trial_id, None)
            self._changed(trial_id)
            raise
        if state.is_finished():
            self._own.pop(trial_id, None)
            if not (updated and held is not None and self._keep_finished(held, state, values)):
                self._changed(trial_id)
            return bool(updated)
        self._changed(trial_id)
        if state == TrialState.RUNNING and updated:  # a WAITING trial this process took
            trial = super().get_trial(trial_id)  # type: ignore[misc]
            self._own[trial_id] = copy.deepcopy(trial)
            self._own_study[trial_id] = self.get_study_id_from_trial(trial)
        return bool(updated)

    def _keep_finished(
        self, held: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> bool:
        """Put a trial this process just finished into the study's cached trial list as it
        now stands in the storage, instead of reading the list again for it; True if done
        (else the list is read again at the next listing)."""
        return False

    def get_study_id_from_trial(self, trial: FrozenTrial) -> int:
        raise NotImplementedError

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        super().set_trial_param(  # type: ignore[misc]
            trial_id, param_name, param_value_internal, distribution
        )
        t = self._own.get(trial_id)
        if t is not None:
            t.params = {**t.params, param_name: distribution.to_external_repr(param_value_internal)}
            t.distributions = {**t.distributions, param_name: distribution}

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)  # type: ignore[misc]
        t = self._own.get(trial_id)
        if t is not None:
            t.intermediate_values = {**t.intermediate_values, step: intermediate_value}

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_user_attr(trial_id, key, value)  # type: ignore[misc]
        t = self._own.get(trial_id)
        if t is not None:
            t.user_attrs = {**t.user_attrs, key: value}

    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Several user attrs at once: one write where the storage below has a batch
        (ServiceStorage), else one per key."""
        batch = getattr(self._batch_target(), "set_trial_user_attrs", None)
        if batch is not None:
            batch(trial_id, attrs)
        else:
            for key, value in attrs.items():
                super().set_trial_user_attr(trial_id, key, value)  # type: ignore[misc]
        t = self._own.get(trial_id)
        if t is not None:
            t.user_attrs = {**t.user_attrs, **attrs}

    def _batch_target(self) -> Any:
        return None

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_system_attr(trial_id, key, value)  # type: ignore[misc]
        t = self._own.get(trial_id)
        if t is not None and key != HEARTBEAT_ATTR:
            t.system_attrs = {**t.system_attrs, key: value}

    def get_trial(self, trial_id: int) -> FrozenTrial:
        t = self._own.get(trial_id)
        if t is not None:
            return _detached(t)
        return super().get_trial(trial_id)  # type: ignore[misc]


def _value_rows(trial_id: int, values: Sequence[float] | None) -> list[dict[str, Any]]:
    """The trial_values rows of a trial's end, stored as Optuna stores them."""
    rows = []
    for objective, v in enumerate(values or ()):
        stored, kind = rdb_models.TrialValueModel.value_to_stored_repr(v)
        rows.append(
            {"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind}
        )
    return rows


def _detached(t: FrozenTrial) -> FrozenTrial:
    """A copy of a held trial that its reader may change as Optuna's Trial changes the
    trial it reads (a key set in its params, distributions, attrs or intermediate values):
    its own dicts, the values in them shared. The held trial's values are never changed in
    place (scalars, distributions, JSON values as written), so this is what a deep copy
    would give, at a fraction of its cost (Optuna reads a running trial at every report,
    `should_prune` and suggestion)."""
    c = copy.copy(t)
    c.params = dict(t.params)
    c.distributions = dict(t.distributions)
    c.user_attrs = dict(t.user_attrs)
    c.system_attrs = dict(t.system_attrs)
    c.intermediate_values = dict(t.intermediate_values)
    if t.values is not None:
        c.values = list(t.values)
    return c


class ServiceCache(_HeldTrials, _CachedStorage):
    """Optuna's trial cache (what `optuna.load_study` puts around an RDBStorage: finished
    trials read once, then only new and unfinished ones), with the trials this process runs
    held in memory and the trial list re-read on change or every `refresh_s` (see
    _HeldTrials); also a study's id by name (Hyperband looks it up at every `should_prune`),
    and stale trials (dead workers') looked for once per heartbeat interval, not before
    every trial. Anything else is the backend's: `count`, `close`, `max_trials`, `engine`...
    """

    def __init__(self, backend: ServiceStorage) -> None:
        super().__init__(backend)
        self._held_init()
        self._study_ids: dict[str, int] = {}
        self._stale_at: dict[int, float] = {}  # study id -> time of the last stale check

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_backend", "_own", "_own_study", "_read_at"):
            raise AttributeError(name)
        return getattr(self._backend, name)

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._held_init()

    def _fetch_new(self, study_id: int, trial_id: int) -> FrozenTrial:
        with self._lock:
            number = self._trial_id_to_study_id_and_number[trial_id][1]
            return copy.deepcopy(self._studies[study_id].trials[number])

    def _batch_target(self) -> Any:
        return self._backend

    def get_study_id_from_trial(self, trial: FrozenTrial) -> int:
        return self._trial_id_to_study_id_and_number[trial._trial_id][0]

    def _keep_finished(
        self, held: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> bool:
        """The finished trial is what this process held (every write of it went through
        here) with its end: state, values and the storage's own completion time, read
        alone. The trial list is then read again only when due (`refresh_s`), and that
        read replaces this copy with the storage's (the trial is still listed as unfinished
        in Optuna's cache, or newer than its last finished trial): so a trial's end costs
        one small query, not a re-read of the list (six ORM queries)."""
        sid = self._own_study.get(held._trial_id)
        if sid is None or sid not in self._studies:
            return False
        done = copy.copy(held)
        done.state = state
        done.values = list(values) if values is not None else None
        backend: ServiceStorage = self._backend  # type: ignore[assignment]
        done.datetime_complete = backend.completed_at(held._trial_id)
        with self._lock:
            self._add_trials_to_cache(sid, [done])
        return True

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        if self._due(study_id):
            self._read_trials_from_remote_storage(study_id)
            self._read_at[study_id] = time.monotonic()
        with self._lock:
            trials = self._studies[study_id].trials
            return self._listing(study_id, trials, states, deepcopy)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # Optuna asks before every trial; a trial is stale only after `grace_period` seconds,
        # so asking once per heartbeat interval finds every stale trial as soon, near enough.
        every = self._backend.heartbeat_interval or 0
        now = time.monotonic()
        if now - self._stale_at.get(study_id, -1e18) < every:
            return []
        self._stale_at[study_id] = now
        backend: ServiceStorage = self._backend  # type: ignore[assignment]
        failed = backend.fail_stale_and_retry(study_id)
        for trial_id in failed:  # one this process held is no longer its to write
            self._own.pop(trial_id, None)
        if failed:
            self._read_at.pop(study_id, None)  # their retries are listed at the next read
        return []

    def get_study_id_from_name(self, study_name: str) -> int:
        sid = self._study_ids.get(study_name)
        if sid is None:
            sid = self._study_ids[study_name] = super().get_study_id_from_name(study_name)
        return sid

    def delete_study(self, study_id: int) -> None:
        self._study_ids = {k: v for k, v in self._study_ids.items() if v != study_id}
        self._read_at.pop(study_id, None)
        super().delete_study(study_id)


def _grpc_status(e: BaseException) -> str:
    code = getattr(e, "code", None)
    return str(code()).rsplit(".", 1)[-1] if callable(code) else ""


def _study_full(e: BaseException) -> StudyFull | None:
    """The proxy's refusal to start a trial (RESOURCE_EXHAUSTED, 'limit=N ...') as StudyFull."""
    cause = e.__cause__ or e
    if _grpc_status(cause) != "RESOURCE_EXHAUSTED":
        return None
    details = str(cause.details()) if hasattr(cause, "details") else ""
    m = re.match(r"limit=(\d+) (.*)", details)
    return StudyFull(m.group(2), int(m.group(1))) if m else StudyFull(details, 0)


@_with_retries
class ProxyStorage(_HeldTrials, GrpcStorageProxy, BaseHeartbeat):
    """A worker's storage behind `optuna-run proxy` (grpc://HOST:PORT).

    Heartbeats: while a trial runs, Optuna's heartbeat thread calls `record_heartbeat`,
    sent as the reserved system attr HEARTBEAT_ATTR, which the proxy's storage stores as a
    heartbeat row. Stale trials are failed (and re-queued) by the proxy, which sees every
    study; this side reports none. The trial cap is the proxy's: a refusal to start a trial
    comes back as StudyFull.
    """

    reconnect_s: float = RECONNECT_S

    def __init__(self, host: str, port: int, heartbeat_interval: int | None) -> None:
        super().__init__(host=host, port=port)
        self._held_init()
        self.heartbeat_interval = heartbeat_interval
        self.display = self.display_url = f"grpc://{host}:{port}"

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._held_init()

    def _fetch_new(self, study_id: int, trial_id: int) -> FrozenTrial:
        trial = GrpcStorageProxy.get_trial(self, trial_id)
        self._own_study[trial_id] = study_id
        return trial

    def get_study_id_from_trial(self, trial: FrozenTrial) -> int:
        sid = self._own_study.get(trial._trial_id)
        if sid is not None:
            return sid
        with self._cache.lock:
            for sid, entry in self._cache.studies.items():
                t = entry.trials.get(trial.number)
                if t is not None and t._trial_id == trial._trial_id:
                    return sid
        return -1  # not listed yet: not put into listings; the next one reads it

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        if self._due(study_id) or study_id not in self._cache.studies:
            self._cache.get_all_trials(study_id, None)  # new and unfinished trials, by RPC
            self._read_at[study_id] = time.monotonic()
        with self._cache.lock:
            trials = dict(self._cache.studies[study_id].trials)
        return self._listing(study_id, trials, states, deepcopy)

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, True)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return []  # the proxy fails stale trials

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return None

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        try:
            return super().create_new_trial(study_id, template_trial)
        except Exception as e:
            full = _study_full(e)
            if full is None:
                raise
            raise full from None

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        try:
            return super().set_trial_state_values(trial_id, state, values)
        except Exception as e:
            full = _study_full(e)
            if full is None:
                raise
            raise full from None

    def count(self, study_id: int, states: Container[TrialState] = CLAIMED) -> int:
        """Trials of the study in `states`, from the client's incremental trial cache."""
        return len(self.get_all_trials(study_id, deepcopy=False, states=states))


def _make_proxy_client(url: str, heartbeat_interval: int | None, timeout: float) -> ProxyStorage:
    m = re.fullmatch(r"grpc://(\[[^\]]+\]|[^:/\[\]]+):(\d+)/?", url)
    if not m:
        raise StorageError(f"storage URL {mask(url)!r}: expected grpc://HOST:PORT")
    try:
        import grpc  # noqa: F401
        from optuna.storages._grpc.auto_generated import api_pb2  # noqa: F401 (protobuf)
    except ImportError:
        raise StorageError(
            f"storage URL {url!r} needs grpcio and protobuf, which are not installed: "
            "pip install 'lstm-panel-search[grpc]'"
        ) from None
    host, port = m.group(1).strip("[]"), int(m.group(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = ProxyStorage(host, port, heartbeat_interval)
    try:
        storage.wait_server_ready(timeout=timeout)
    except ConnectionError:
        storage.close()
        raise StorageError(
            f"cannot reach the storage proxy at {url} within {timeout:.0f}s "
            "(is `optuna-run proxy` running there?)"
        ) from None
    return storage


EXPECTED_URL = (
    "expected sqlite:///FILE, postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE or "
    "grpc://HOST:PORT (`optuna-run proxy`)"
)


def _as_written(url: str) -> str:
    """The URL as given (not re-rendered, so nothing %-encoded), its passwords masked."""
    out = re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)
    out = re.sub(r"([?&](?:password|passwd|pwd)=)[^&]*", r"\1***", out, flags=re.IGNORECASE)
    for secret in _secrets(url):
        out = out.replace(secret, "***")
    return out


def check_url(url: str) -> None:
    """Refuse, before anything is opened, a storage URL that cannot hold a study: another
    scheme, one that does not parse (e.g. a port that is no number), a port out of range, an
    in-memory SQLite database. Raises StorageError with the password masked."""
    scheme = _scheme(url)
    shown = _as_written(url)
    if scheme not in SCHEMES:
        raise StorageError(
            f"storage URL {shown!r}: {EXPECTED_URL} (journal files are not "
            "offered: they have no heartbeat, so a dead worker's trial would stay RUNNING)"
        )
    if scheme == "grpc":
        m = re.fullmatch(r"grpc://(\[[^\]]+\]|[^:/\[\]]+):(\d+)/?", url)
        if not m:
            raise StorageError(f"storage URL {shown!r}: expected grpc://HOST:PORT")
        port: int | None = int(m.group(2))
    else:
        try:
            u = make_url(url)
            port = u.port
        except (ArgumentError, ValueError):
            raise StorageError(
                f"storage URL {shown!r} is not valid: {EXPECTED_URL} (PORT a number)"
            ) from None
        if scheme == "sqlite" and _in_memory(u.database or "", u.query.get("mode")):
            raise StorageError(
                f"storage URL {shown!r}: an in-memory SQLite database cannot hold a study "
                "(it is gone when the process ends, and other processes cannot share it); "
                "give a file: sqlite:///FILE, e.g. sqlite:///studies/optuna.db"
            )
    if port is not None and not 1 <= port <= 65535:
        raise StorageError(f"storage URL {shown!r}: expected a PORT from 1 to 65535, got {port}")


def _in_memory(database: str, mode: str | Sequence[str] | None) -> bool:
    """`sqlite://`, `sqlite:///:memory:` or `?mode=memory`: a database that lives in one
    process only."""
    modes = [mode] if isinstance(mode, str) else list(mode or [])
    return not database or database.startswith((":memory:", "file::memory:")) or "memory" in modes


def make_storage(
    url: str,
    *,
    heartbeat_interval: int | None = 20,
    grace_period: int | None = 60,
    max_retry: int = 2,
    max_trials: int | None = None,
    attempts: int = 8,
    reconnect_s: float = RECONNECT_S,
    beat_on_create: bool = True,
) -> ServiceCache | ProxyStorage:
    """An RDB storage for `url` (behind ServiceCache), creating the schema if needed; for grpc://HOST:PORT, a
    client of `optuna-run proxy` (the proxy then owns the trial cap: `max_trials` must be
    None there).

    The schema of a fresh database is created under a lock (one process at a time); should
    it still collide with a process that does not take the lock (SQLite 'database is
    locked', PostgreSQL UniqueViolation on pg_type), the set-up is retried with jittered
    back-off. Errors are raised as StorageError with the password masked.
    """
    check_url(url)
    scheme = _scheme(url)
    if scheme == "grpc":
        if max_trials is not None:
            raise StorageError(
                "--max-trials cannot be counted by a worker behind the storage proxy; "
                "give it to the proxy instead: optuna-run proxy --storage URL --max-trials N"
            )
        client = _make_proxy_client(url, heartbeat_interval, timeout=min(reconnect_s, 30))
        client.reconnect_s = reconnect_s
        return client
    sqlite_file = _sqlite_file(url)
    if scheme == "sqlite":
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    elif scheme == "postgresql":
        # No ping before each use (a round trip per storage call): a connection found dead
        # is retried at once on a fresh one (_retrying), which is what the ping would do.
        engine_kwargs = {"pool_pre_ping": False, "pool_size": 2, "max_overflow": 2}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    hb: dict[str, Any] = {}
    if heartbeat_interval:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        hb = dict(
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=retry,
        )
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            with _setup_lock(url):
                if sqlite_file is not None:
                    _prepare_sqlite(sqlite_file)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    storage = ServiceStorage(url, engine_kwargs=engine_kwargs, **hb)
            storage.max_trials = max_trials
            storage.reconnect_s = reconnect_s
            storage.beat_on_create = beat_on_create
            storage.display, storage.display_url = describe(url), url
            if sqlite_file is not None:
                storage.lock_file = sqlite_file + "-lock"
            if scheme == "sqlite":
                event.listen(storage.engine, "connect", _on_sqlite_connect)
                storage.engine.dispose()  # later connections get the pragmas
            return ServiceCache(storage)
        except ArgumentError as e:
            raise StorageError(
                f"storage URL {mask(url)!r} is not valid: {scrub(str(e), url)}"
            ) from None
        except ImportError as e:
            name = getattr(e.__cause__, "name", None) or e.name or str(e)
            raise StorageError(
                f"storage URL {mask(url)!r} needs a database driver that is not installed: {name}"
            ) from None
        except (SQLAlchemyError, sqlite3.Error, optuna.exceptions.StorageInternalError) as e:
            last = e
            cause = f"{e} {e.__cause__ or ''}".lower()
            if not any(w in cause for w in TRANSIENT) or attempt == attempts - 1:
                break
            time.sleep(0.2 * (2**attempt) * (0.5 + random.random()))
    assert last is not None
    lines = str(last.__cause__ or last).strip().splitlines() or [type(last).__name__]
    raise StorageError(f"cannot open storage {mask(url)!r}: {scrub(lines[0], url)}")


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials of workers that died (no heartbeat within the grace period); the
    storage's RetryHeartbeatStaleTrialCallback queues each one's params again.

    Optuna only checks when a trial starts; every run calls this first, so a study never
    keeps a dead worker's trial RUNNING.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
