"""Locks shared by the processes (and machines) of a study: schema creation on a fresh
database one process at a time, and a study's trial starts under a lock file beside the
SQLite file or a PostgreSQL advisory lock; SQLite's connection set-up."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from search.storage.common import LOCK_CLASS, SETUP_KEY, SQLITE_TIMEOUT_S
from search.storage.urls import _scheme, _sqlite_file

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


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
