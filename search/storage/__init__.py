"""Study storages: URLs, SQLite and PostgreSQL set-up, locks, retries, the gRPC proxy.

What reaches into Optuna's private API lives in search/storage/_optuna (the fast path, used
with the Optuna releases it was tested with); search/storage/stock.py is the stock path.
The names are search.storage.rdb's (its __all__)."""

from typing import Any

from search.storage import rdb
from search.storage.rdb import *  # noqa: F403

__all__ = rdb.__all__


def __getattr__(name: str) -> Any:
    """ServiceCache, ServiceStorage, ProxyStorage: see search.storage.rdb.__getattr__."""
    return getattr(rdb, name)
