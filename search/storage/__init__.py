"""Study storages: URLs, SQLite and PostgreSQL set-up, locks, retries, the gRPC proxy.

What reaches into Optuna's private API lives in search/storage/_optuna (the fast path, used
with the Optuna releases it was tested with); search/storage/stock.py is the stock path."""

from typing import Any

from search.storage import rdb
from search.storage.rdb import (
    CLAIMED,
    DEFAULT_STORAGE,
    HEARTBEAT_ATTR,
    StockProxy,
    StockStorage,
    StorageError,
    StudyFull,
    StudyStorage,
    check_url,
    describe,
    fail_stale,
    make_storage,
    mask,
    resolve_url,
    scrub,
    storage_backend,
)

__all__ = [
    "CLAIMED",
    "DEFAULT_STORAGE",
    "HEARTBEAT_ATTR",
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


def __getattr__(name: str) -> Any:
    """ServiceCache, ServiceStorage, ProxyStorage: see search.storage.rdb.__getattr__."""
    return getattr(rdb, name)
