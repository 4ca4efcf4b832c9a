"""A worker's storage behind `optuna-run proxy`: Optuna's gRPC client with the trials it
runs held in memory, heartbeats sent as a reserved trial system attr."""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Container, Sequence
from typing import Any

import optuna
from optuna.storages import GrpcStorageProxy
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from search.storage._optuna.cache import _HeldTrials
from search.storage.common import CLAIMED, HEARTBEAT_ATTR, RECONNECT_S, StorageError, StudyFull
from search.storage.retry import _with_retries
from search.storage.urls import mask


def _grpc_status(e: BaseException) -> str:
    code = getattr(e, "code", None)
    return str(code()).rsplit(".", 1)[-1] if callable(code) else ""


def _study_full(e: BaseException) -> StudyFull | None:
    """The proxy's refusal to start a trial (RESOURCE_EXHAUSTED, 'limit=N ...') as StudyFull."""
    cause = e.__cause__ or e
    if _grpc_status(cause) != "RESOURCE_EXHAUSTED":
        return None
    details = str(cause.details()) if hasattr(cause, "details") else ""
    m = re.match(r"limit=(\d+) (.*)", details)
    return StudyFull(m.group(2), int(m.group(1))) if m else StudyFull(details, 0)


@_with_retries
class ProxyStorage(_HeldTrials, GrpcStorageProxy, BaseHeartbeat):
    """A worker's storage behind `optuna-run proxy` (grpc://HOST:PORT).

    Heartbeats: while a trial runs, Optuna's heartbeat thread calls `record_heartbeat`,
    sent as the reserved system attr HEARTBEAT_ATTR, which the proxy's storage stores as a
    heartbeat row. Stale trials are failed (and re-queued) by the proxy, which sees every
    study; this side reports none. The trial cap is the proxy's: a refusal to start a trial
    comes back as StudyFull.
    """

    reconnect_s: float = RECONNECT_S

    def __init__(self, host: str, port: int, heartbeat_interval: int | None) -> None:
        super().__init__(host=host, port=port)
        self._held_init()
        self.heartbeat_interval = heartbeat_interval
        self.display = self.display_url = f"grpc://{host}:{port}"

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._held_init()

    def _fetch_new(self, study_id: int, trial_id: int) -> FrozenTrial:
        trial = GrpcStorageProxy.get_trial(self, trial_id)
        self._own_study[trial_id] = study_id
        return trial

    def get_study_id_from_trial(self, trial: FrozenTrial) -> int:
        sid = self._own_study.get(trial._trial_id)
        if sid is not None:
            return sid
        with self._cache.lock:
            for sid, entry in self._cache.studies.items():
                t = entry.trials.get(trial.number)
                if t is not None and t._trial_id == trial._trial_id:
                    return sid
        return -1  # not listed yet: not put into listings; the next one reads it

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        if self._due(study_id) or study_id not in self._cache.studies:
            self._cache.get_all_trials(study_id, None)  # new and unfinished trials, by RPC
            self._read_at[study_id] = time.monotonic()
        with self._cache.lock:
            trials = dict(self._cache.studies[study_id].trials)
        return self._listing(study_id, trials, states, deepcopy)

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, True)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return []  # the proxy fails stale trials

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return None

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        try:
            return super().create_new_trial(study_id, template_trial)
        except Exception as e:
            full = _study_full(e)
            if full is None:
                raise
            raise full from None

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        try:
            return super().set_trial_state_values(trial_id, state, values)
        except Exception as e:
            full = _study_full(e)
            if full is None:
                raise
            raise full from None

    def count(self, study_id: int, states: Container[TrialState] = CLAIMED) -> int:
        """Trials of the study in `states`, from the client's incremental trial cache."""
        return len(self.get_all_trials(study_id, deepcopy=False, states=states))


def _make_proxy_client(url: str, heartbeat_interval: int | None, timeout: float) -> ProxyStorage:
    m = re.fullmatch(r"grpc://(\[[^\]]+\]|[^:/\[\]]+):(\d+)/?", url)
    if not m:
        raise StorageError(f"storage URL {mask(url)!r}: expected grpc://HOST:PORT")
    try:
        import grpc  # noqa: F401
        from optuna.storages._grpc.auto_generated import api_pb2  # noqa: F401 (protobuf)
    except ImportError:
        raise StorageError(
            f"storage URL {url!r} needs grpcio and protobuf, which are not installed: "
            "pip install 'lstm-panel-search[grpc]'"
        ) from None
    host, port = m.group(1).strip("[]"), int(m.group(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = ProxyStorage(host, port, heartbeat_interval)
    try:
        storage.wait_server_ready(timeout=timeout)
    except ConnectionError:
        storage.close()
        raise StorageError(
            f"cannot reach the storage proxy at {url} within {timeout:.0f}s "
            "(is `optuna-run proxy` running there?)"
        ) from None
    return storage
