"""The stock path: Optuna's own storages through their public API only, for an Optuna the
fast path was not tested with (or OPTUNA_RUN_STOCK_STORAGE=1; see search/storage/_optuna).

- StockStorage: Optuna's RDBStorage as it is (its heartbeat, its writes, trials without a
  first heartbeat left as Optuna leaves them) behind Optuna's own trial cache, as
  `optuna.create_study` puts it, with the service's trial cap made atomic by the same locks
  as the fast path around the cache's public trial creation and state changes, reconnect
  retries, `count` and `close`.
- StockProxy: Optuna's GrpcStorageProxy client, with the proxy's refusal of a trial start
  as StudyFull; it sends no heartbeat (a stock client has none).

Slower (every write through the ORM, the cap counted from the trial list), same results.
Only names that optuna.storages exports (its __all__, _CachedStorage among them, which
`optuna.storages.get_storage` returns) and their public methods are used.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

import optuna
from optuna.storages import GrpcStorageProxy, RDBStorage, _CachedStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import Engine

from search.storage.common import CLAIMED, RECONNECT_S, StorageError, StudyFull, StudyStorage
from search.storage.locks import TrialCap
from search.storage.retry import with_retries
from search.storage.urls import mask

P = TypeVar("P", bound=GrpcStorageProxy)
GRPC_URL = r"grpc://(\[[^\]]+\]|[^:/\[\]]+):(\d+)/?"


@with_retries("record_heartbeat", "count")
class StockStorage(TrialCap, _CachedStorage):
    """Optuna's trial cache over Optuna's RDBStorage (what `optuna.create_study` makes of an
    RDB URL), with the trial cap (TrialCap) around its public trial creation and state
    changes, and the service's `count`, `close`, retries."""

    def __init__(self, rdb: RDBStorage) -> None:
        super().__init__(rdb)
        self.rdb = rdb

    @property
    def backend(self) -> RDBStorage:
        """The RDB storage below this cache."""
        return self.rdb

    @property
    def engine(self) -> Engine:  # type: ignore[override]
        return self.rdb.engine

    @property
    def heartbeat_interval(self) -> int | None:  # type: ignore[override]
        return self.rdb.heartbeat_interval

    def count(self, study_id: int, states: Sequence[TrialState] = CLAIMED) -> int:
        """Trials of the study in `states` (default COMPLETE, PRUNED, RUNNING)."""
        return len(self.get_all_trials(study_id, deepcopy=False, states=states))

    def _study_of(self, trial_id: int) -> int:
        """The study holding the trial (looked for study by study: only a queued trial's
        start asks, with --max-trials)."""
        number = self.get_trial(trial_id).number
        for study in self.get_all_studies():
            study_id = self.get_study_id_from_name(study.study_name)
            try:
                if self.get_trial_id_from_study_id_trial_number(study_id, number) == trial_id:
                    return study_id
            except KeyError:
                continue
        raise KeyError(f"no study holds trial {trial_id}")

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self._capped_new(study_id, template_trial, super().create_new_trial)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        change = super().set_trial_state_values
        return self._capped_state(trial_id, state, lambda: change(trial_id, state, values))


def _grpc_status(e: BaseException) -> str:
    code = getattr(e, "code", None)
    return str(code()).rsplit(".", 1)[-1] if callable(code) else ""


def study_full(e: BaseException) -> StudyFull | None:
    """The proxy's refusal to start a trial (RESOURCE_EXHAUSTED, 'limit=N ...') as StudyFull."""
    cause = e.__cause__ or e
    if _grpc_status(cause) != "RESOURCE_EXHAUSTED":
        return None
    details = str(cause.details()) if hasattr(cause, "details") else ""
    m = re.match(r"limit=(\d+) (.*)", details)
    return StudyFull(m.group(2), int(m.group(1))) if m else StudyFull(details, 0)


@with_retries("count")
class StockProxy(GrpcStorageProxy, StudyStorage):
    """Optuna's gRPC client (grpc://HOST:PORT), a refused trial start raised as StudyFull."""

    reconnect_s: float = RECONNECT_S
    heartbeat_interval: int | None = None  # a stock client sends no heartbeat

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host=host, port=port)
        self.display = self.display_url = f"grpc://{host}:{port}"

    def count(self, study_id: int, states: Sequence[TrialState] = CLAIMED) -> int:
        return len(self.get_all_trials(study_id, deepcopy=False, states=states))

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        try:
            return super().create_new_trial(study_id, template_trial)
        except Exception as e:
            full = study_full(e)
            if full is None:
                raise
            raise full from None

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        try:
            return super().set_trial_state_values(trial_id, state, values)
        except Exception as e:
            full = study_full(e)
            if full is None:
                raise
            raise full from None


def proxy_address(url: str) -> tuple[str, int]:
    """HOST and PORT of grpc://HOST:PORT."""
    m = re.fullmatch(GRPC_URL, url)
    if not m:
        raise StorageError(f"storage URL {mask(url)!r}: expected grpc://HOST:PORT")
    try:
        import google.protobuf  # noqa: F401
        import grpc  # noqa: F401
    except ImportError:
        raise StorageError(
            f"storage URL {url!r} needs grpcio and protobuf, which are not installed: "
            "pip install 'lstm-panel-search[grpc]'"
        ) from None
    return m.group(1).strip("[]"), int(m.group(2))


def connect_proxy(url: str, timeout: float, make: Callable[[str, int], P]) -> P:
    """`make(HOST, PORT)`'s client of the proxy at grpc://HOST:PORT, once it answers."""
    host, port = proxy_address(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = make(host, port)
    try:
        storage.wait_server_ready(timeout=timeout)
    except ConnectionError:
        storage.close()
        raise StorageError(
            f"cannot reach the storage proxy at {url} within {timeout:.0f}s "
            "(is `optuna-run proxy` running there?)"
        ) from None
    return storage
