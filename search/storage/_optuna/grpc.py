"""A worker's storage behind `optuna-run proxy`: Optuna's gRPC client with the trials it
runs held in memory, heartbeats sent as a reserved trial system attr."""

from __future__ import annotations

import time
from collections.abc import Callable, Container
from typing import Any

import optuna
from optuna.storages import GrpcStorageProxy
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from search.storage._optuna.cache import _HeldTrials
from search.storage.common import HEARTBEAT_ATTR, StudyFull
from search.storage.retry import with_retries
from search.storage.stock import StockProxy, connect_proxy


@with_retries("set_trial_user_attrs", "record_heartbeat", "_get_stale_trial_ids")
class ProxyStorage(_HeldTrials, StockProxy, BaseHeartbeat):
    """A worker's storage behind `optuna-run proxy` (grpc://HOST:PORT).

    Heartbeats: while a trial runs, Optuna's heartbeat thread calls `record_heartbeat`,
    sent as the reserved system attr HEARTBEAT_ATTR, which the proxy's storage stores as a
    heartbeat row. Stale trials are failed (and re-queued) by the proxy, which sees every
    study; this side reports none. The trial cap is the proxy's: a refusal to start a trial
    comes back as StudyFull.
    """

    def __init__(self, host: str, port: int, heartbeat_interval: int | None) -> None:
        super().__init__(host=host, port=port)
        self._held_init()
        self.heartbeat_interval = heartbeat_interval

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


def make_proxy_client(url: str, heartbeat_interval: int | None, timeout: float) -> ProxyStorage:
    return connect_proxy(
        url, timeout, lambda host, port: ProxyStorage(host, port, heartbeat_interval)
    )


def add_proxy_service(storage: optuna.storages.BaseStorage, server: Any) -> None:
    """Optuna's storage servicer for `storage` added to the gRPC `server`; a refused trial
    start (StudyFull) answered as RESOURCE_EXHAUSTED, 'limit=N reason'."""
    import grpc
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    class Service(OptunaStorageProxyService):
        """Optuna's servicer; a refused trial start becomes RESOURCE_EXHAUSTED."""

        def CreateNewTrial(self, request: Any, context: Any) -> Any:  # noqa: N802
            try:
                return super().CreateNewTrial(request, context)
            except StudyFull as e:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"limit={e.limit} {e}")

        def SetTrialStateValues(self, request: Any, context: Any) -> Any:  # noqa: N802
            try:
                return super().SetTrialStateValues(request, context)
            except StudyFull as e:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"limit={e.limit} {e}")

    api_pb2_grpc.add_StorageServiceServicer_to_server(Service(storage), server)
