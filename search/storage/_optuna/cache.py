"""The trials a process runs held in memory, and Optuna's trial cache around our storage."""

from __future__ import annotations

import copy
import time
from collections.abc import Container, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState

from search.storage._optuna.service import ServiceStorage
from search.storage.common import CLAIMED, HEARTBEAT_ATTR, StudyStorage


class _HeldTrials:
    """The trials this process runs, held in memory and updated as they are written (params,
    intermediate values, attrs), so that reading them, which Optuna does at every report,
    `should_prune` and suggestion, costs no round trip. Every write still goes to the
    storage first and is checked there: a trial failed by another process's heartbeat check
    refuses the write, as without this.

    Also: a study's trial list is read again when this process changed a trial's state since
    the last read, else at most every `refresh_s` seconds, so other workers' progress is
    seen up to that much later; a worker alone on its study sees exactly what it would see
    without the cache. Mixed in before an Optuna storage class.
    """

    refresh_s = 1.0

    def _held_init(self) -> None:
        self._own: dict[int, FrozenTrial] = {}
        self._own_study: dict[int, int] = {}
        self._read_at: dict[int, float] = {}  # study id -> monotonic time of the last read

    def _fetch_new(self, study_id: int, trial_id: int) -> FrozenTrial:
        raise NotImplementedError

    def _due(self, study_id: int) -> bool:
        last = self._read_at.get(study_id)
        return last is None or time.monotonic() - last >= self.refresh_s

    def _listing(
        self,
        study_id: int,
        trials: dict[int, FrozenTrial],
        states: Container[TrialState] | None,
        deepcopy: bool,
    ) -> list[FrozenTrial]:
        """`trials` (number -> trial) with the held ones put in as they are now."""
        for trial_id, t in tuple(self._own.items()):  # other threads add and remove
            if self._own_study.get(trial_id) == study_id:
                # A snapshot: the held trial changes with the next write (its dicts are
                # replaced, never changed in place); a listing handed out must not.
                trials[t.number] = copy.copy(t)
        # by number (sorting the int keys is several times faster than sorting the trials)
        ordered = map(trials.__getitem__, sorted(trials))
        out = list(ordered) if states is None else [t for t in ordered if t.state in states]
        return copy.deepcopy(out) if deepcopy else out

    def _changed(self, trial_id: int) -> None:
        """A trial's state changed here: read its study's trials at the next listing."""
        sid = self._own_study.get(trial_id)
        if sid is None:
            self._read_at.clear()
        else:
            self._read_at.pop(sid, None)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)  # type: ignore[misc]
        trial = self._fetch_new(study_id, trial_id)
        if trial.state == TrialState.RUNNING:
            self._own[trial_id] = trial
            self._own_study[trial_id] = study_id
        else:
            self._read_at.pop(study_id, None)
        return trial_id

    def delete_study(self, study_id: int) -> None:
        """The study deleted, and with it the trials of it this process held (a database
        may give its id to the next study created)."""
        for trial_id, sid in tuple(self._own_study.items()):
            if sid == study_id:
                self._own.pop(trial_id, None)
                del self._own_study[trial_id]
        self._read_at.pop(study_id, None)
        super().delete_study(study_id)  # type: ignore[misc]

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        held = self._own.get(trial_id)
        try:
            updated = super().set_trial_state_values(trial_id, state, values)  # type: ignore[misc]
        except Exception:
            self._own.pop(trial_id, None)
            self._changed(trial_id)
            raise
        if state.is_finished():
            self._own.pop(trial_id, None)
            if not (updated and held is not None and self._keep_finished(held, state, values)):
                self._changed(trial_id)
            return bool(updated)
        self._changed(trial_id)
        if state == TrialState.RUNNING and updated:  # a WAITING trial this process took
            trial = super().get_trial(trial_id)  # type: ignore[misc]
            self._own[trial_id] = copy.deepcopy(trial)
            self._own_study[trial_id] = self.get_study_id_from_trial(trial)
        return bool(updated)

    def _keep_finished(
        self, held: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> bool:
        """Put a trial this process just finished into the study's cached trial list as it
        now stands in the storage, instead of reading the list again for it; True if done
        (else the list is read again at the next listing)."""
        return False

    def get_study_id_from_trial(self, trial: FrozenTrial) -> int:
        raise NotImplementedError

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        super().set_trial_param(  # type: ignore[misc]
            trial_id, param_name, param_value_internal, distribution
        )
        t = self._own.get(trial_id)
        if t is not None:
            t.params = {**t.params, param_name: distribution.to_external_repr(param_value_internal)}
            t.distributions = {**t.distributions, param_name: distribution}

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)  # type: ignore[misc]
        t = self._own.get(trial_id)
        if t is not None:
            t.intermediate_values = {**t.intermediate_values, step: intermediate_value}

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_user_attr(trial_id, key, value)  # type: ignore[misc]
        t = self._own.get(trial_id)
        if t is not None:
            t.user_attrs = {**t.user_attrs, key: value}

    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Several user attrs at once: one write where the storage below has a batch
        (ServiceStorage), else one per key."""
        batch = getattr(self._batch_target(), "set_trial_user_attrs", None)
        if batch is not None:
            batch(trial_id, attrs)
        else:
            for key, value in attrs.items():
                super().set_trial_user_attr(trial_id, key, value)  # type: ignore[misc]
        t = self._own.get(trial_id)
        if t is not None:
            t.user_attrs = {**t.user_attrs, **attrs}

    def _batch_target(self) -> Any:
        return None

    def write_user_attrs(self, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
        """The trial's user attrs in one write (set_trial_user_attrs), and the trial's own
        copy of itself updated as Optuna's `set_user_attr` updates it."""
        self.set_trial_user_attrs(trial._trial_id, attrs)
        trial._cached_frozen_trial.user_attrs.update(attrs)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_system_attr(trial_id, key, value)  # type: ignore[misc]
        t = self._own.get(trial_id)
        if t is not None and key != HEARTBEAT_ATTR:
            t.system_attrs = {**t.system_attrs, key: value}

    def get_trial(self, trial_id: int) -> FrozenTrial:
        t = self._own.get(trial_id)
        if t is not None:
            return _detached(t)
        return super().get_trial(trial_id)  # type: ignore[misc]


def _detached(t: FrozenTrial) -> FrozenTrial:
    """A copy of a held trial that its reader may change as Optuna's Trial changes the
    trial it reads (a key set in its params, distributions, attrs or intermediate values):
    its own dicts, the values in them shared. The held trial's values are never changed in
    place (scalars, distributions, JSON values as written), so this is what a deep copy
    would give, at a fraction of its cost (Optuna reads a running trial at every report,
    `should_prune` and suggestion)."""
    c = copy.copy(t)
    c.params = dict(t.params)
    c.distributions = dict(t.distributions)
    c.user_attrs = dict(t.user_attrs)
    c.system_attrs = dict(t.system_attrs)
    c.intermediate_values = dict(t.intermediate_values)
    if t.values is not None:
        c.values = list(t.values)
    return c


class ServiceCache(_HeldTrials, _CachedStorage, StudyStorage):
    """Optuna's trial cache (what `optuna.load_study` puts around an RDBStorage: finished
    trials read once, then only new and unfinished ones), with the trials this process runs
    held in memory and the trial list re-read on change or every `refresh_s` (see
    _HeldTrials); also a study's id by name (Hyperband looks it up at every `should_prune`),
    and stale trials (dead workers') looked for once per heartbeat interval, not before
    every trial. Anything else is the backend's: `count`, `close`, `max_trials`, `engine`...
    """

    def __init__(self, backend: ServiceStorage) -> None:
        super().__init__(backend)
        self._held_init()
        self._study_ids: dict[str, int] = {}
        self._stale_at: dict[int, float] = {}  # study id -> time of the last stale check

    def count(self, study_id: int, states: Sequence[TrialState] = CLAIMED) -> int:
        return self.backend.count(study_id, states)

    def close(self) -> None:
        self.backend.close()

    @property
    def backend(self) -> ServiceStorage:
        """The RDB storage below this cache."""
        backend: ServiceStorage = self._backend  # type: ignore[assignment]
        return backend

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_backend", "_own", "_own_study", "_read_at"):
            raise AttributeError(name)
        return getattr(self._backend, name)

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._held_init()

    def _fetch_new(self, study_id: int, trial_id: int) -> FrozenTrial:
        with self._lock:
            number = self._trial_id_to_study_id_and_number[trial_id][1]
            return copy.deepcopy(self._studies[study_id].trials[number])

    def _batch_target(self) -> Any:
        return self._backend

    def get_study_id_from_trial(self, trial: FrozenTrial) -> int:
        return self._trial_id_to_study_id_and_number[trial._trial_id][0]

    def _keep_finished(
        self, held: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> bool:
        """The finished trial is what this process held (every write of it went through
        here) with its end: state, values and the storage's own completion time, read
        alone. The trial list is then read again only when due (`refresh_s`), and that
        read replaces this copy with the storage's (the trial is still listed as unfinished
        in Optuna's cache, or newer than its last finished trial): so a trial's end costs
        one small query, not a re-read of the list (six ORM queries)."""
        sid = self._own_study.get(held._trial_id)
        if sid is None or sid not in self._studies:
            return False
        done = copy.copy(held)
        done.state = state
        done.values = list(values) if values is not None else None
        backend: ServiceStorage = self._backend  # type: ignore[assignment]
        done.datetime_complete = backend.completed_at(held._trial_id)
        with self._lock:
            self._add_trials_to_cache(sid, [done])
        return True

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        if self._due(study_id):
            self._read_trials_from_remote_storage(study_id)
            self._read_at[study_id] = time.monotonic()
        with self._lock:
            trials = self._studies[study_id].trials
            return self._listing(study_id, trials, states, deepcopy)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # Optuna asks before every trial; a trial is stale only after `grace_period` seconds,
        # so asking once per heartbeat interval finds every stale trial as soon, near enough.
        every = self._backend.heartbeat_interval or 0
        now = time.monotonic()
        if now - self._stale_at.get(study_id, -1e18) < every:
            return []
        self._stale_at[study_id] = now
        backend: ServiceStorage = self._backend  # type: ignore[assignment]
        failed = backend.fail_stale_and_retry(study_id)
        for trial_id in failed:  # one this process held is no longer its to write
            self._own.pop(trial_id, None)
        if failed:
            self._read_at.pop(study_id, None)  # their retries are listed at the next read
        return []

    def get_study_id_from_name(self, study_name: str) -> int:
        sid = self._study_ids.get(study_name)
        if sid is None:
            sid = self._study_ids[study_name] = super().get_study_id_from_name(study_name)
        return sid

    def delete_study(self, study_id: int) -> None:
        self._study_ids = {k: v for k, v in self._study_ids.items() if v != study_id}
        self._stale_at.pop(study_id, None)
        super().delete_study(study_id)
