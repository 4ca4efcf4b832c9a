"""Everything of the service that reaches into Optuna's private API, and only here: the
fast write path over Optuna's RDB table models (optuna.storages._rdb), our subclasses of
Optuna's trial cache (optuna.storages._cached_storage) and gRPC client and servicer
(optuna.storages._grpc, _heartbeat), Hyperband's private bracket methods, and the private
attributes of Study and Trial that these read.

They are used only with the Optuna releases they were tested with (TESTED, the minor
versions; SCHEMAS, the alembic heads of their RDB schema). With any other Optuna, or with
OPTUNA_RUN_STOCK_STORAGE=1, the service takes the stock path instead (search/storage/
stock.py: Optuna's RDBStorage with its heartbeat and RetryHeartbeatStaleTrialCallback, the
trial cap kept by the same locks; public API only) and says why in one line on stderr.
The modules of this package that import Optuna's private ones are imported only after
that check; a private name they use that is missing raises at their import (a test
failure, tests/search_tests/test_storage_fallback.py), never a silent skip.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType

import optuna

TESTED = ((5, 0), (5, 1))
SCHEMAS = ("v3.2.0.a",)
STOCK_ENV = "OPTUNA_RUN_STOCK_STORAGE"
MODULES = ("statements", "writes", "service", "cache", "grpc", "hyperband")

_UNSET = "unset"
_reason: str | None = _UNSET


def schema_head() -> str | None:
    """The head revision of the installed Optuna's RDB schema migrations (alembic), read
    from its version scripts without importing alembic; None if they cannot be read."""
    spec = importlib.util.find_spec("optuna.storages")
    if spec is None or spec.origin is None:
        return None
    versions = Path(spec.origin).parent / "_rdb" / "alembic" / "versions"
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in versions.glob("*.py"):
        text = script.read_text(encoding="utf-8")
        rev = re.search(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
        down = re.search(r"^down_revision\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
        if rev:
            revisions.add(rev.group(1))
        if down:
            parents.add(down.group(1))
    heads = sorted(revisions - parents)
    return heads[0] if len(heads) == 1 else None


def decide(version: str, schema: str | None) -> str | None:
    """Why the stock path is taken with this Optuna `version` and `schema` head (None: the
    fast path is fine). Neither the environment nor the modules are looked at here."""
    m = re.match(r"(\d+)\.(\d+)", version)
    lo, hi = TESTED[0], TESTED[-1]
    shown = f"{lo[0]}.{lo[1]} - {hi[0]}.{hi[1]}"
    if m is None or (int(m.group(1)), int(m.group(2))) not in TESTED:
        return f"Optuna {version} is not one the storage was tested with ({shown})"
    if schema not in SCHEMAS:
        return (
            f"Optuna {version}'s storage schema {schema or '(unknown)'} is not one the "
            f"storage was tested with ({', '.join(SCHEMAS)})"
        )
    return None


def _load() -> str | None:
    """Import the modules over Optuna's private API; why they cannot be used, if so."""
    try:
        for name in MODULES:
            importlib.import_module(f"{__name__}.{name}")
    except (ImportError, AttributeError) as e:
        return f"Optuna {optuna.__version__}'s private API differs from the tested one: {e}"
    return None


def stock_reason() -> str | None:
    """Why this process takes the stock path (None: the fast path), decided once; said
    once on stderr."""
    global _reason
    if _reason == _UNSET:
        if os.environ.get(STOCK_ENV) == "1":
            reason: str | None = f"{STOCK_ENV}=1"
        else:
            reason = decide(optuna.__version__, schema_head()) or _load()
        _reason = reason
        if reason is not None:
            print(
                f"optuna-run: {reason}; using Optuna's stock storage "
                "(RDBStorage, its heartbeat and retries: slower, same results)",
                file=sys.stderr,
                flush=True,
            )
    return _reason


def fast(name: str) -> ModuleType | None:
    """This package's module `name` (one of MODULES) on the fast path, else None."""
    if stock_reason() is not None:
        return None
    return importlib.import_module(f"{__name__}.{name}")
