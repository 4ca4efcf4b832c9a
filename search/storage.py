"""Storage URLs -> Optuna RDB storages: SQLite tuned for several local writers, PostgreSQL
for many machines; heartbeats so a dead worker's trial is failed and retried. All storage
set-up lives here. Passwords never leave this module unmasked."""

from __future__ import annotations

import os
import random
import re
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

DEFAULT_STORAGE = "sqlite:///studies/optuna.db"
ENV_VAR = "OPTUNA_STORAGE"
SQLITE_TIMEOUT_S = 120


class StorageError(RuntimeError):
    """A storage URL that cannot be used; the message never holds a password."""


def resolve_url(flag: str | None) -> str:
    """--storage wins over $OPTUNA_STORAGE, which wins over the default SQLite file.

    A relative SQLite path is made absolute against the current directory.
    """
    url = flag or os.environ.get(ENV_VAR) or DEFAULT_STORAGE
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url[len("sqlite:///") :]
        if rel and rel != ":memory:":
            url = "sqlite:///" + str(Path(rel).resolve())
    return url


def mask(url: str) -> str:
    """The URL with any password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def scrub(text: str, url: str) -> str:
    """`text` with the URL's password (if any) replaced by ***."""
    try:
        pw = make_url(url).password
    except (ArgumentError, ValueError):
        pw = None
    out = text.replace(url, mask(url))
    return out.replace(str(pw), "***") if pw else out


def describe(url: str) -> str:
    """Where the study lives, for people: the SQLite file's absolute path, or the masked URL."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :]
    return mask(url)


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _prepare_sqlite(url: str) -> None:
    path = url[len("sqlite:///") :]
    if not path or path == ":memory:":
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # WAL is a property of the file: readers never block the writer, writers queue.
    con = sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def _on_sqlite_connect(dbapi_con: Any, _: Any) -> None:
    dbapi_con.execute("PRAGMA synchronous=NORMAL")
    dbapi_con.execute(f"PRAGMA busy_timeout={SQLITE_TIMEOUT_S * 1000}")


def make_storage(
    url: str,
    *,
    heartbeat_interval: int | None = 20,
    grace_period: int | None = 60,
    max_retry: int = 2,
    attempts: int = 8,
) -> RDBStorage:
    """An RDBStorage for `url`, creating the schema if needed.

    Several processes creating the schema at once on a fresh database can collide (SQLite
    'database is locked', PostgreSQL UniqueViolation on pg_type): the set-up is retried with
    jittered back-off. Errors are re-raised as StorageError with the password masked.
    """
    if _is_sqlite(url):
        _prepare_sqlite(url)
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    elif url.startswith("postgresql"):
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
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(url, engine_kwargs=engine_kwargs, **hb)
            if _is_sqlite(url):
                event.listen(storage.engine, "connect", _on_sqlite_connect)
                storage.engine.dispose()  # later connections get the pragmas
            return storage
        except ArgumentError as e:
            raise StorageError(f"storage URL {mask(url)!r} is not valid: {scrub(str(e), url)}") from None
        except ModuleNotFoundError as e:
            raise StorageError(f"storage URL {mask(url)!r} needs a driver that is not installed: {e.name}") from None
        except (SQLAlchemyError, DBAPIError) as e:
            last = e
            msg = str(e).lower()
            transient = any(
                w in msg for w in ("locked", "unique", "duplicate", "already exists", "deadlock")
            )
            if not transient or attempt == attempts - 1:
                break
            time.sleep(0.2 * (2**attempt) * (0.5 + random.random()))
    assert last is not None
    first = scrub(str(last).strip().splitlines()[0], url)
    raise StorageError(f"cannot open storage {mask(url)!r}: {first}")


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials of workers that died (no heartbeat within the grace period).

    Optuna only checks when a trial starts; every run calls this first, so a study never
    keeps a dead worker's trial RUNNING.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
