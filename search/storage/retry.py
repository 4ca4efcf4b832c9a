"""Waiting out a lost connection: a storage call that fails because the database (or the
proxy) cannot be reached is retried with back-off, with a line on stderr (password masked)
at each wait."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError

from search.storage.urls import scrub


def _disconnected(e: BaseException) -> bool:
    """Whether `e` (or what caused it) says the database or the proxy cannot be reached, as
    opposed to an error a retry would only repeat."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        mod = type(x).__module__
        if getattr(x, "connection_invalidated", False):
            return True
        if mod.startswith("psycopg") and type(x).__name__ in (
            "OperationalError",
            "InterfaceError",
            "AdminShutdown",
            "CannotConnectNow",
            "ConnectionFailure",
            "ConnectionException",
            "SqlclientUnableToEstablishSqlconnection",
        ):
            return True
        if mod.startswith("grpc") and hasattr(x, "code"):
            try:
                return str(x.code()).endswith("UNAVAILABLE")
            except Exception:  # pragma: no cover - an RpcError without a status
                return False
        todo += [x.__cause__, x.__context__, getattr(x, "orig", None)]
    return False


def error_line(e: BaseException) -> str:
    """What a storage error says, in one line: a gRPC error's status and details (its
    text's first line says only "<_InactiveRpcError of RPC that terminated with:"), else the
    first line of the error (or of its cause)."""
    x = e.__cause__ or e
    if type(x).__module__.startswith("grpc") and callable(getattr(x, "code", None)):
        try:
            code, details = x.code(), x.details()  # type: ignore[attr-defined]
            return f"{getattr(code, 'name', code)}: {details}" if details else str(code)
        except Exception:  # pragma: no cover - an RpcError without a status
            pass
    return (str(x).strip().splitlines() or [type(x).__name__])[0]


_depth = threading.local()


def _stale_connection(e: BaseException) -> bool:
    """A pooled connection found dead on its first use (the server restarted since, or
    closed it): SQLAlchemy has discarded the pool's connections, so the next try opens a
    fresh one (the pool does not ping before each use: this retry does that job)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:  # Optuna re-raises it as its own error
        seen.add(id(e))
        if isinstance(e, DBAPIError):
            return bool(e.connection_invalidated)
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method` retried while the storage is unreachable, for up to `self.reconnect_s`
    seconds in all, with a line on stderr at each wait (the first retry after a stale pooled
    connection is made at once, silently). Only the outermost storage call of a thread
    retries (a call made inside another one fails through to it)."""

    # the heartbeat thread waits out the same outage as the trial's own calls: its lines
    # say whose they are, so the two do not read as one line printed twice
    whose = "the heartbeat's " if method.__name__ == "record_heartbeat" else ""

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_depth, "n", 0):
            return method(self, *args, **kwargs)
        deadline = time.monotonic() + self.reconnect_s
        attempt = 0
        fresh = False
        while True:
            _depth.n = 1
            try:
                return method(self, *args, **kwargs)
            except Exception as e:
                if not fresh and _stale_connection(e):
                    fresh = True
                    continue
                left = deadline - time.monotonic()
                if not _disconnected(e) or left <= 0:
                    raise
                attempt += 1
                pause = min(2.0 ** (attempt - 1), 10.0, max(left, 0.1))
                print(
                    f"optuna-run: storage {self.display} unreachable "
                    f"({scrub(error_line(e), self.display_url)}); {whose}retry {attempt} in "
                    f"{pause:.0f}s, giving up in {left:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
                time.sleep(pause)
            finally:
                _depth.n = 0

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def _beating(method: Callable[..., Any]) -> Callable[..., Any]:
    """`record_heartbeat` (already retrying) that, once the storage stayed unreachable for
    the whole wait, says so and returns instead of raising: Optuna's heartbeat thread ends
    at its first error (a traceback on stderr, and no beat for the rest of the trial, which
    the stale-trial check would then fail under a live worker); this way it beats again at
    its next interval, and the trial goes on once the storage is back. Called inside
    another storage call (the proxy's servicer records a heartbeat inside its
    set_trial_system_attr), it raises as any nested call does, so the outer call retries."""

    def wrapper(self: Any, trial_id: int) -> None:
        if getattr(_depth, "n", 0):  # inside another storage call: that call's retry decides
            method(self, trial_id)
            return
        try:
            method(self, trial_id)
        except Exception as e:
            if not _disconnected(e):
                raise
            print(
                f"optuna-run: storage {self.display} still unreachable "
                f"({scrub(error_line(e), self.display_url)}); the heartbeat of a running trial "
                "was not written, the next one is tried at its interval",
                file=sys.stderr,
                flush=True,
            )

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


# The storage calls of Optuna's public storage API that reach the database (or the proxy),
# retried when it is unreachable; each class adds those of its own it has.
PUBLIC_CALLS = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "get_best_trial",
)


def with_retries(*names: str) -> Callable[[type], type]:
    """A class decorator: PUBLIC_CALLS and `names` retried while the storage is
    unreachable. A name the class lacks (e.g. an Optuna method renamed) raises here, at
    import: the protection never vanishes silently."""

    def decorate(cls: type) -> type:
        every = (*PUBLIC_CALLS, *names)
        missing = [n for n in every if not callable(getattr(cls, n, None))]
        if missing:
            raise AttributeError(f"{cls.__name__} has no {', '.join(missing)} to retry")
        for name in every:
            setattr(cls, name, _retrying(getattr(cls, name)))
        if "record_heartbeat" in names:
            cls.record_heartbeat = _beating(cls.record_heartbeat)  # type: ignore[attr-defined]
        return cls

    return decorate
