"""Study storages: URLs, SQLite and PostgreSQL set-up, locks, retries, the gRPC proxy."""

from search.storage.rdb import (
    CLAIMED,
    DEFAULT_STORAGE,
    HEARTBEAT_ATTR,
    ProxyStorage,
    ServiceCache,
    StorageError,
    StudyFull,
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
    "StorageError",
    "StudyFull",
    "check_url",
    "describe",
    "fail_stale",
    "make_storage",
    "mask",
    "resolve_url",
    "scrub",
    "storage_backend",
]
