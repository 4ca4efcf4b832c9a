"""pytest plugin (loaded by run.py): Optuna's storage tests against `make_storage`.

Optuna's test helper `optuna.testing.storages.StorageSupplier` is pointed at our storages:
its "sqlite" mode gets the RDB storage `make_storage` builds (`storage_backend(...)`), its
"cached_sqlite" mode what a study of ours uses (`optuna.storages.get_storage(make_storage(
...))`, the same object on the fast path), both on $OPTUNA_SUITE_BACKEND (a fresh SQLite
file, or a PostgreSQL or MySQL database emptied for each test); its other modes (in-memory, journal,
gRPC) are not ours and are deselected. test_with_server.py's `get_storage` gets
`make_storage` on the same backend.

DEVIATIONS lists the tests whose Optuna behaviour we deliberately do not have, each with its
reason (and a test of ours for the behaviour chosen instead); they run as strict xfails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

OURS = ("sqlite", "cached_sqlite")
BACKEND = os.environ.get("OPTUNA_SUITE_BACKEND", "sqlite")
STOCK = os.environ.get("OPTUNA_RUN_STOCK_STORAGE") == "1"

# test id -> why we differ (only where the fast path runs: the stock path is Optuna's)
FAST_DEVIATIONS = {
    "test_heartbeat.py::test_fail_stale_trials[None]": (
        "a trial's first heartbeat is written with its creation, so a worker killed before "
        "its heartbeat thread began leaves no trial RUNNING forever (Optuna never fails a "
        "trial that never beat); tests/search_tests/test_storage.py::"
        "test_trial_without_a_heartbeat_thread_goes_stale_*"
    ),
    "test_heartbeat.py::test_fail_stale_trials[2]": "as test_fail_stale_trials[None]",
}
# both paths: make_storage is the service's, not Optuna's constructor
DEVIATIONS = {
    "test_heartbeat.py::test_heartbeat_experimental_warnings[sqlite]": (
        "make_storage opens every run's storage with heartbeats on and keeps Optuna's "
        "ExperimentalWarning about heartbeat_interval off the run's output; "
        "tests/search_tests/test_storage.py::test_heartbeats_warn_nothing"
    ),
    "test_heartbeat.py::test_heartbeat_experimental_warnings[cached_sqlite]": (
        "as test_heartbeat_experimental_warnings[sqlite]"
    ),
}
# MySQL only: tests that compare a trial's start and end times to the microsecond, which
# Optuna's own RDBStorage stores on MySQL to the second (a DATETIME column): with
# OPTUNA_RUN_STOCK_STORAGE=1 Optuna's storage fails them alike; whether one fails depends on
# whether its trials cross a second, so they run as non-strict xfails. That our writes equal
# Optuna's own on MySQL, times included, is tests/search_tests/test_storage.py::
# test_study_stored_as_optuna_stores_it_mysql.
MYSQL_SECONDS = (
    "test_storages.py::TestStorage::test_create_new_trial[",
    "test_storages.py::TestStorage::test_create_new_trial_with_template_trial[",
    "test_storages.py::TestStorage::test_get_trial[",
    "test_storages.py::TestStorage::test_get_all_trials[",
)


def _fake_redis() -> None:
    """optuna.testing.storages imports fakeredis for its journal_redis mode, not run here."""
    try:
        import fakeredis  # noqa: F401
    except ImportError:
        stub = types.ModuleType("fakeredis")
        stub.FakeStrictRedis = object  # type: ignore[attr-defined]
        sys.modules["fakeredis"] = stub


class _Backend:
    """A fresh storage URL per test: a SQLite file in a temporary folder, or one PostgreSQL
    (MySQL) database of this run (created at start, dropped at the end) emptied before each
    test."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="optuna-suite-")
        self.pg_db: str | None = None
        self.mysql = BACKEND == "mysql"
        self.admin = (
            os.environ.get("OPTUNA_SUITE_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
            if self.mysql
            else os.environ.get(
                "OPTUNA_SUITE_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
            )
        )
        self.q = "`" if self.mysql else '"'  # how the server quotes a name
        if BACKEND in ("postgresql", "mysql"):
            self.pg_db = f"optuna_suite_{uuid.uuid4().hex[:12]}"
            self._admin(f"CREATE DATABASE {self.q}{self.pg_db}{self.q}")

    def _admin(self, sql: str) -> None:
        engine = create_engine(self.admin, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as con:
                con.execute(text(sql))
        finally:
            engine.dispose()

    def url(self) -> str:
        if self.pg_db is None:
            return f"sqlite:///{self.folder}/{uuid.uuid4().hex}.db"
        url = make_url(self.admin).set(database=self.pg_db).render_as_string(False)
        engine = create_engine(url)
        keep = ("alembic_version", "version_info")
        try:
            with engine.begin() as con:
                if self.mysql:  # one table a TRUNCATE, the foreign keys off meanwhile
                    tables = con.execute(
                        text(
                            "SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = DATABASE()"
                        )
                    ).scalars()
                    con.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
                    for t in [t for t in tables if t not in keep]:
                        con.execute(text(f"TRUNCATE TABLE `{t}`"))
                    con.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
                    return url
                tables = con.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                ).scalars()
                names = ", ".join(f'"{t}"' for t in tables if t not in keep)
                if names:
                    con.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        finally:
            engine.dispose()
        return url

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.pg_db is not None:
            force = "" if self.mysql else " WITH (FORCE)"
            self._admin(f"DROP DATABASE IF EXISTS {self.q}{self.pg_db}{self.q}{force}")


_backend: _Backend | None = None


def _ours(url: str, extra: dict[str, Any]) -> Any:
    from search.storage import make_storage

    callback = extra.get("heartbeat_stale_trial_callback") or extra.get("failed_trial_callback")
    return make_storage(
        url,
        heartbeat_interval=extra.get("heartbeat_interval"),
        grace_period=extra.get("grace_period"),
        stale_trial_callback=callback,
        max_retry=0,  # no callback given: none retries
    )


def pytest_configure(config: pytest.Config) -> None:
    global _backend
    _fake_redis()
    import optuna
    from optuna.testing import storages

    from search.storage import storage_backend

    _backend = _Backend()
    storages.STORAGE_MODES[:] = list(OURS)
    storages.STORAGE_MODES_HEARTBEAT[:] = list(OURS)
    stock_enter = storages.StorageSupplier.__enter__

    def enter(self: Any) -> Any:
        if self.storage_specifier not in OURS:
            return stock_enter(self)
        assert _backend is not None
        made = _ours(_backend.url(), self.extra_args)
        if self.storage_specifier == "sqlite":
            self.storage = storage_backend(made)
        else:
            self.storage = optuna.storages.get_storage(made)
        return self.storage

    storages.StorageSupplier.__enter__ = enter  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _backend is not None:
        _backend.close()


@contextlib.contextmanager
def _server_storage() -> Iterator[Any]:
    assert _backend is not None
    storage = _ours(os.environ["TEST_DB_URL"], {})
    try:
        yield storage
    finally:
        storage_close = getattr(storage, "close", None)
        if storage_close is not None:
            storage_close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    assert _backend is not None
    os.environ.setdefault("TEST_DB_URL", _backend.url())
    deviations = dict(DEVIATIONS)
    if not STOCK:
        deviations.update(FAST_DEVIATIONS)
    kept, dropped = [], []
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.endswith("test_with_server"):
            module.get_storage = _server_storage
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        mode = params.get("storage") or params.get("storage_mode")
        if isinstance(mode, str) and mode not in OURS:
            dropped.append(item)
            continue
        key = f"{item.path.name}::{item.name}"
        if key in deviations:
            reason = deviations[key]
            if reason.startswith("as "):
                reason = deviations[f"{item.path.name}::{reason[3:]}"]
            item.add_marker(pytest.mark.xfail(strict=True, reason="deviation: " + reason))
        elif BACKEND == "mysql" and any(
            f"{item.path.name}::{item.nodeid.split('::', 1)[1]}".startswith(m)
            for m in MYSQL_SECONDS
        ):
            item.add_marker(
                pytest.mark.xfail(strict=False, reason="Optuna stores times to the second on MySQL")
            )
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept
