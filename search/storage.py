"""Storage URLs -> Optuna RDB storages: SQLite tuned for several local writers, PostgreSQL
for many machines; heartbeats so a dead worker's trial is failed and retried. All storage
set-up lives here. Passwords never leave this module unmasked.

Races between processes are closed with locks rather than left to chance: the schema of a
fresh database is created by one process at a time, and with `max_trials` the check "does
the study have room?" and the start of the trial are one step (a PostgreSQL advisory lock,
or a lock file beside the SQLite file), so concurrent workers on any machine never start
more trials than asked. Journal storages are not offered: they have no heartbeat, so a dead
worker's trial would stay RUNNING for ever.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sqlite3
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models as rdb_models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

DEFAULT_STORAGE = "sqlite:///studies/optuna.db"
ENV_VAR = "OPTUNA_STORAGE"
SQLITE_TIMEOUT_S = 120
SCHEMES = ("sqlite", "postgresql", "mysql")
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

    def _check_room(self, study_id: int) -> None:
        if self.max_trials is not None:
            n = self.count(study_id)
            if n >= self.max_trials:
                raise StudyFull(
                    f"the study holds {n} finished or running trials (--max-trials "
                    f"{self.max_trials})"
                )

    def _study_of(self, trial_id: int) -> int:
        t = rdb_models.TrialModel
        with self.engine.connect() as con:
            return int(con.execute(select(t.study_id).where(t.trial_id == trial_id)).scalar_one())

    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        if template_trial is not None or self.max_trials is None:
            return super()._create_new_trial(study_id, template_trial)
        with self._claim(study_id):
            self._check_room(study_id)
            return super()._create_new_trial(study_id, template_trial)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        starting = state == TrialState.RUNNING and self.max_trials is not None
        if not starting and self.lock_file is None:
            return super().set_trial_state_values(trial_id, state, values)
        study_id = self._study_of(trial_id) if starting else 0
        with self._claim(study_id):
            if starting:
                self._check_room(study_id)
            return super().set_trial_state_values(trial_id, state, values)


def make_storage(
    url: str,
    *,
    heartbeat_interval: int | None = 20,
    grace_period: int | None = 60,
    max_retry: int = 2,
    max_trials: int | None = None,
    attempts: int = 8,
) -> ServiceStorage:
    """An RDB storage for `url`, creating the schema if needed.

    The schema of a fresh database is created under a lock (one process at a time); should
    it still collide with a process that does not take the lock (SQLite 'database is
    locked', PostgreSQL UniqueViolation on pg_type), the set-up is retried with jittered
    back-off. Errors are raised as StorageError with the password masked.
    """
    scheme = _scheme(url)
    if scheme not in SCHEMES:
        raise StorageError(
            f"storage URL {mask(url)!r}: expected sqlite:///FILE or "
            "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE (journal files are not "
            "offered: they have no heartbeat, so a dead worker's trial would stay RUNNING)"
        )
    sqlite_file = _sqlite_file(url)
    if scheme == "sqlite":
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    elif scheme == "postgresql":
        engine_kwargs = {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2}
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
            if sqlite_file is not None:
                storage.lock_file = sqlite_file + "-lock"
            if scheme == "sqlite":
                event.listen(storage.engine, "connect", _on_sqlite_connect)
                storage.engine.dispose()  # later connections get the pragmas
            return storage
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
