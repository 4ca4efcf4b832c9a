"""Locks shared by the processes (and machines) of a study: schema creation on a fresh
database one process at a time, and a study's trial starts under a lock file beside the
SQLite file, a PostgreSQL advisory lock or a MySQL named lock; SQLite's connection set-up."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from search.storage.common import (
    CLAIMED,
    LOCK_CLASS,
    RECONNECT_S,
    SETUP_KEY,
    SQLITE_TIMEOUT_S,
    StudyFull,
    StudyStorage,
)
from search.storage.urls import _scheme, _sqlite_file

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")


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
def _mysql_lock(engine: Engine, key: int) -> Iterator[None]:
    """A MySQL / MariaDB named lock (GET_LOCK) held for the block; a lock of the session, so
    a worker that dies holding it frees it with its connection. Its name holds the database's
    (named locks are server-wide, PostgreSQL's advisory locks per database). Taken on a
    connection of its own (no pool): a lock that a failed release left behind dies with it."""
    solo, digest = _mysql_locker(engine)
    name = f"optuna-run:{LOCK_CLASS}:{digest}:{key}"  # under MySQL's 64 characters
    with solo.connect() as con:  # closed at the end: the lock cannot outlive the block
        # a year, as long as PostgreSQL's lock waits (MariaDB takes no negative "forever")
        got = con.execute(text("SELECT GET_LOCK(:n, 31536000)"), {"n": name}).scalar()
        if got != 1:  # pragma: no cover - 0 or NULL: not granted (a year out, killed)
            raise RuntimeError(f"the database refused the study's lock {name!r} (GET_LOCK)")
        try:
            yield
        finally:
            con.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})


_MYSQL_LOCKERS: dict[str, tuple[Engine, str]] = {}


def _mysql_locker(engine: Engine) -> tuple[Engine, str]:
    """For `engine`'s database: an engine without a pool (each lock on a connection that is
    closed after it) and a digest of the database's name, made once per process."""
    url = engine.url.render_as_string(hide_password=False)
    if url not in _MYSQL_LOCKERS:
        solo = create_engine(engine.url, poolclass=NullPool)
        with solo.connect() as probe:
            db = str(probe.execute(text("SELECT DATABASE()")).scalar() or "")
        _MYSQL_LOCKERS[url] = (solo, hashlib.sha1(db.encode()).hexdigest()[:16])
    return _MYSQL_LOCKERS[url]


def _server_lock(engine: Engine, key: int) -> contextlib.AbstractContextManager[None]:
    """The database server's own lock `key`, for PostgreSQL and MySQL / MariaDB."""
    return (_pg_lock if engine.dialect.name == "postgresql" else _mysql_lock)(engine, key)


@contextlib.contextmanager
def _setup_lock(url: str) -> Iterator[None]:
    """Serialise schema creation on a fresh database across processes and machines."""
    path = _sqlite_file(url)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(path + "-lock"):
            yield
    elif _scheme(url) in ("postgresql", "mysql"):
        engine = create_engine(url, poolclass=NullPool)
        try:
            with _server_lock(engine, SETUP_KEY):
                yield
        finally:
            engine.dispose()
    else:
        yield


def study_lock(storage: Any, study_id: int) -> contextlib.AbstractContextManager[None]:
    """The study's lock, the one its trial starts take (a lock file beside the SQLite file,
    a PostgreSQL advisory lock, a MySQL named lock), for a step that must not interleave with another
    process's; no lock through the proxy, whose storage calls are not held together."""
    claim = getattr(storage, "_claim", None)  # a ServiceCache hands it to its backend
    return claim(study_id) if callable(claim) else contextlib.nullcontext()


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


class TrialCap(StudyStorage):
    """Trial starts atomic across processes, for an RDB storage (mixed in before it).

    With `max_trials` set, creating a trial (or starting a WAITING one, e.g. a retry of a
    dead worker's trial) first takes the study's lock, counts its COMPLETE, PRUNED and
    RUNNING trials and raises StudyFull when they reach `max_trials`. On SQLite every state
    change also takes the file lock: SQLite ignores SELECT ... FOR UPDATE, so without it two
    processes could both start the same WAITING trial, or both fail (and retry) one stale
    trial.
    """

    max_trials: int | None = None
    lock_file: str | None = None
    reconnect_s: float = RECONNECT_S
    display = ""
    display_url = ""
    engine: Engine

    def close(self) -> None:
        self.engine.dispose()

    def _study_of(self, trial_id: int) -> int:
        raise NotImplementedError

    def _claim(self, study_id: int) -> contextlib.AbstractContextManager[None]:
        if self.lock_file is not None:
            return _file_lock(self.lock_file)
        if self.engine.dialect.name in ("postgresql", "mysql"):
            return _server_lock(self.engine, study_id)
        return contextlib.nullcontext()

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
                    f"the study holds {n} {what} trial{'' if n == 1 else 's'} "
                    f"(--max-trials {self.max_trials})",
                    self.max_trials,
                )

    def _capped_new(
        self,
        study_id: int,
        template_trial: FrozenTrial | None,
        create: Callable[[int, FrozenTrial | None], T],
    ) -> T:
        """`create(study_id, template_trial)`; a new plain trial only if the study has room,
        checked and created under the study's lock."""
        if template_trial is not None or self.max_trials is None:
            return create(study_id, template_trial)
        with self._claim(study_id):
            self._check_room(study_id, queued=True)
            return create(study_id, template_trial)

    def _capped_state(self, trial_id: int, state: TrialState, change: Callable[[], bool]) -> bool:
        """`change()` (the trial's state change) under the lock where one is needed; a
        WAITING trial started only if its study has room."""
        starting = state == TrialState.RUNNING and self.max_trials is not None
        if not starting and self.lock_file is None:
            return change()
        study_id = self._study_of(trial_id) if starting else 0
        with self._claim(study_id):
            if starting:
                self._check_room(study_id)
            return change()
