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

import random
import sqlite3
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from search.storage import _optuna
from search.storage.common import (
    CLAIMED,
    DEFAULT_STORAGE,
    ENV_VAR,
    HEARTBEAT_ATTR,
    RECONNECT_S,
    SQLITE_TIMEOUT_S,
    TRANSIENT,
    RetryStale,
    StorageError,
    StudyFull,
    StudyStorage,
)
from search.storage.locks import _on_sqlite_connect, _prepare_sqlite, _setup_lock
from search.storage.stock import StockProxy, StockStorage, connect_proxy
from search.storage.urls import (
    _scheme,
    _sqlite_file,
    check_url,
    describe,
    mask,
    resolve_url,
    scrub,
)

if TYPE_CHECKING:
    from search.storage._optuna.cache import ServiceCache
    from search.storage._optuna.grpc import ProxyStorage
    from search.storage._optuna.service import ServiceStorage

__all__ = [
    "CLAIMED",
    "DEFAULT_STORAGE",
    "ENV_VAR",
    "HEARTBEAT_ATTR",
    "RECONNECT_S",
    "ProxyStorage",
    "ServiceCache",
    "ServiceStorage",
    "StockProxy",
    "StockStorage",
    "StorageError",
    "StudyFull",
    "StudyStorage",
    "check_url",
    "describe",
    "fail_stale",
    "make_storage",
    "mask",
    "resolve_url",
    "scrub",
    "storage_backend",
]


def _proxy_client(
    url: str, heartbeat_interval: int | None, max_trials: int | None, reconnect_s: float
) -> StudyStorage:
    """A client of `optuna-run proxy` at grpc://HOST:PORT (ours on the fast path)."""
    if max_trials is not None:
        raise StorageError(
            "--max-trials cannot be counted by a worker behind the storage proxy; "
            "give it to the proxy instead: optuna-run proxy --storage URL --max-trials N"
        )
    timeout = min(reconnect_s, 30)
    grpc_fast = _optuna.fast("grpc")
    client: StudyStorage
    if grpc_fast is None:
        client = connect_proxy(url, timeout, StockProxy)
    else:
        client = grpc_fast.make_proxy_client(url, heartbeat_interval, timeout)
    client.reconnect_s = reconnect_s
    return client


def _engine_kwargs(scheme: str) -> dict[str, Any]:
    if scheme == "sqlite":
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    if scheme == "postgresql":
        # No ping before each use (a round trip per storage call): a connection found dead
        # is retried at once on a fresh one (_retrying), which is what the ping would do.
        return {"pool_pre_ping": False, "pool_size": 2, "max_overflow": 2}
    return {"pool_pre_ping": True}


def _heartbeat_args(
    heartbeat_interval: int | None,
    grace_period: int | None,
    max_retry: int,
    stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None,
) -> dict[str, Any]:
    """RDBStorage's heartbeat arguments (Optuna checks `grace_period` even alone)."""
    if heartbeat_interval is None:
        return {"grace_period": grace_period}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = stale_trial_callback or RetryStale(
            RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        )
    return dict(
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=retry,
    )


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
    stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> StudyStorage:
    """An RDB storage for `url`, creating the schema if needed; for grpc://HOST:PORT, a
    client of `optuna-run proxy` (the proxy then owns the trial cap: `max_trials` must be
    None there). On the fast path (search/storage/_optuna) the service's storage behind
    its trial cache (ServiceCache); on the stock path Optuna's RDBStorage (StockStorage),
    or its gRPC client, with the same trial cap, retries and messages.

    The schema of a fresh database is created under a lock (one process at a time); should
    it still collide with a process that does not take the lock (SQLite 'database is
    locked', PostgreSQL UniqueViolation on pg_type), the set-up is retried with jittered
    back-off. Errors are raised as StorageError with the password masked.

    With heartbeats on, a trial whose heartbeat went stale is failed and
    `stale_trial_callback` called on it (default: RetryHeartbeatStaleTrialCallback queueing
    its params again, up to `max_retry` times, without the failed run's fail_reason /
    prune_reason: common.RetryStale).
    """
    check_url(url)
    scheme = _scheme(url)
    if scheme == "grpc":
        return _proxy_client(url, heartbeat_interval, max_trials, reconnect_s)
    sqlite_file = _sqlite_file(url)
    engine_kwargs = _engine_kwargs(scheme)
    hb = _heartbeat_args(heartbeat_interval, grace_period, max_retry, stale_trial_callback)
    service = _optuna.fast("service")
    storage_class = RDBStorage if service is None else service.ServiceStorage
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            with _setup_lock(url):
                if sqlite_file is not None:
                    _prepare_sqlite(sqlite_file)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    storage = storage_class(url, engine_kwargs=engine_kwargs, **hb)
            if scheme == "sqlite":
                event.listen(storage.engine, "connect", _on_sqlite_connect)
                storage.engine.dispose()  # later connections get the pragmas
            cache = _optuna.fast("cache")
            capped: Any = StockStorage(storage) if cache is None else storage
            capped.max_trials = max_trials
            capped.reconnect_s = reconnect_s
            capped.display, capped.display_url = describe(url), url
            if sqlite_file is not None:
                capped.lock_file = sqlite_file + "-lock"
            if cache is None:
                return capped
            capped.beat_on_create = beat_on_create
            return cache.ServiceCache(storage)
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


def fail_stale(study: optuna.Study) -> list[int]:
    """Fail the trials of workers that died (no heartbeat within the grace period); the
    storage's RetryHeartbeatStaleTrialCallback queues each one's params again. Returns the
    numbers of the trials it failed (of those RUNNING before it, the ones now FAIL).

    Optuna only checks when a trial starts; every run calls this first, so a study never
    keeps a dead worker's trial RUNNING.
    """
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    if not running:
        return []
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return sorted(t.number for t in failed if t.number in running)


def storage_backend(storage: BaseStorage) -> BaseStorage:
    """The RDB storage below `make_storage`'s trial cache (the storage itself if it has none)."""
    backend = getattr(type(storage), "backend", None)
    return storage.backend if isinstance(backend, property) else storage  # type: ignore[attr-defined]


def __getattr__(name: str) -> Any:
    """ServiceCache, ServiceStorage, ProxyStorage: the fast path's classes, imported only
    when it is taken (else the stock path's counterparts); for annotations and isinstance."""
    where = {"ServiceCache": "cache", "ServiceStorage": "service", "ProxyStorage": "grpc"}
    if name not in where:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _optuna.fast(where[name])
    if module is None:
        return StockProxy if name == "ProxyStorage" else StockStorage
    return getattr(module, name)
