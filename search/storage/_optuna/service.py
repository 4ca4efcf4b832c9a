"""The service's RDB storage: trial starts atomic across processes (the trial cap), a
trial's first heartbeat written with it, stale trials failed with their retries queued."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import optuna
from optuna.storages._rdb import models as rdb_models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import func, select

from search.storage._optuna.statements import _to_utc
from search.storage._optuna.writes import FastWrites
from search.storage.common import CLAIMED
from search.storage.locks import TrialCap
from search.storage.retry import with_retries


@with_retries(
    "_create_new_trial",
    "_set_trial_param",
    "_get_trials",
    "_get_best_trial_id",
    "set_trial_user_attrs",
    "record_heartbeat",
    "_get_stale_trial_ids",
    "fail_stale_and_retry",
    "count",
    "completed_at",
)
class ServiceStorage(TrialCap, FastWrites):
    """The service's RDB storage: Optuna's, with the fast write path (FastWrites), trial
    starts atomic across processes (TrialCap), a trial's first heartbeat written with it,
    and stale trials failed with their retries queued under the study's claim."""

    # Write a trial's first heartbeat with its creation or start (see
    # _get_prepared_new_trial): only where every client beats (this service's workers); not
    # behind the proxy, whose clients may be stock Optuna clients without heartbeats.
    beat_on_create = True

    def count(self, study_id: int, states: Sequence[TrialState] = CLAIMED) -> int:
        """Trials of the study in `states` (default COMPLETE, PRUNED, RUNNING), counted in
        the database."""
        t = rdb_models.TrialModel
        query = select(func.count()).select_from(t).where(t.study_id == study_id)
        with self.engine.connect() as con:
            return int(con.execute(query.where(t.state.in_(states))).scalar_one())

    def fail_stale_and_retry(self, study_id: int) -> list[int]:
        """Fail the study's trials whose heartbeat went stale and queue their retries, all
        while holding the study's claim; the ids of the trials failed. (Optuna's
        fail_stale_trials fails all, then queues the retries: in between, a capped study
        (--max-trials) would have room that a new trial could take, leaving a retry that
        can never start. ServiceCache, which every study of the service goes through, does
        it this way; this storage's own `_get_stale_trial_ids` is Optuna's.)"""
        # trial id -> study id: failed here, retry not queued yet (a call cut off between
        # the two leaves it here: the trial is no longer stale, its retry still owed)
        owed: dict[int, int] = self.__dict__.setdefault("_retry_owed", {})
        if not super()._get_stale_trial_ids(study_id) and study_id not in owed.values():
            return []
        retry = self.get_heartbeat_stale_trial_callback()
        failed: list[int] = []
        with self._claim(study_id):
            for trial_id in super()._get_stale_trial_ids(study_id):
                try:
                    if self._set_state(trial_id, TrialState.FAIL, None):
                        failed.append(trial_id)
                        if retry is not None:
                            owed[trial_id] = study_id
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass  # failed by another process meanwhile
            here = [t for t, s in owed.items() if s == study_id]
            if here and retry is not None:
                study = optuna.Study(study_name=self.get_study_name_from_id(study_id), storage=self)
                for trial_id in here:
                    retry(study, copy.deepcopy(self.get_trial(trial_id)))
                    del owed[trial_id]
        return failed

    def _study_of(self, trial_id: int) -> int:
        t = rdb_models.TrialModel
        with self.engine.connect() as con:
            study_id: Any = con.execute(
                select(t.study_id).where(t.trial_id == trial_id)
            ).scalar_one()
            return int(study_id)

    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        return self._capped_new(study_id, template_trial, self._new_trial)

    def _new_trial(self, study_id: int, template_trial: FrozenTrial | None) -> FrozenTrial:
        """Optuna's creation of a trial; a plain new one (no template) as SQL Core
        statements in one transaction, as Optuna makes it: the study's row locked, the
        trial inserted, its number = the study's earlier trials, counted under that lock
        (and, on SQLite, under the write lock the insert took); with heartbeats on, its
        first heartbeat too (see _get_prepared_new_trial)."""
        stmts = self._core()
        if stmts is None or template_trial is not None or "new" not in stmts:
            return super()._create_new_trial(study_id, template_trial)
        start = datetime.now()
        with self.engine.begin() as con:
            if con.execute(stmts["lock_study"], {"lock_study_id": study_id}).first() is None:
                raise KeyError(rdb_models.NOT_FOUND_MSG)
            if "g_new" in stmts:  # PostgreSQL: the rest in one statement
                one = stmts["g_new_beat" if self._beats_on_create() else "g_new"]
                args = {"n_study_id": study_id, "n_state": TrialState.RUNNING}
                made = con.execute(one, {**args, "n_start": _to_utc(start)}).one()
                trial_id, number = int(made[0]), int(made[1])
            else:
                new = {
                    "study_id": study_id,
                    "state": TrialState.RUNNING,
                    "datetime_start": _to_utc(start),
                }
                trial_id = int(con.execute(stmts["new"], new).scalar_one())
                before = {"count_study_id": study_id, "count_trial_id": trial_id}
                number = int(con.execute(stmts["count_before"], before).scalar_one())
                con.execute(stmts["number"], {"number_trial_id": trial_id, "number": number})
                if self._beats_on_create():
                    con.execute(stmts["beat"], {"trial_id": trial_id})
        if self._beats_on_create():
            self._beat_written(trial_id)
        return FrozenTrial(
            number=number,
            state=TrialState.RUNNING,
            value=None,
            values=None,
            datetime_start=start,
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={},
            system_attrs={},
            intermediate_values={},
            trial_id=trial_id,
        )

    def _get_prepared_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None, session: Any
    ) -> Any:
        """Optuna's new trial, plus (with heartbeats on) its first heartbeat in the same
        transaction. Optuna records the first heartbeat only once `ask` has returned, and
        never fails a RUNNING trial without one: a worker killed, or cut off from the
        database, between creating a trial and its first heartbeat (a lost commit reply
        makes the retry create a second one) would leave that trial RUNNING forever, and
        a study capped by --max-trials waiting on it. With it, such a trial goes stale
        after the grace period and is failed and re-run like any dead worker's."""
        trial = super()._get_prepared_new_trial(study_id, template_trial, session)
        if self._beats_on_create() and trial.state == TrialState.RUNNING:
            session.add(rdb_models.TrialHeartbeatModel(trial_id=trial.trial_id))
            self._beat_written(int(trial.trial_id))
        return trial

    def _beats_on_create(self) -> bool:
        return bool(self.heartbeat_interval) and self.beat_on_create

    def _beat_at(self) -> dict[int, float]:
        """Trial id -> when this process wrote the trial's heartbeat with its creation or
        start (monotonic); kept until Optuna's heartbeat thread makes its first beat."""
        return self.__dict__.setdefault("_beats", {})

    def _beat_written(self, trial_id: int) -> None:
        """This process just wrote the trial's heartbeat with its creation or start."""
        beats = self._beat_at()
        if len(beats) > 1024:  # trials whose heartbeat thread never started
            beats.clear()
        beats[trial_id] = time.monotonic()

    def record_heartbeat(self, trial_id: int) -> None:
        """Optuna's heartbeat, except the heartbeat thread's first beat when the trial's
        heartbeat was written with its creation or start an instant before (one write a
        trial fewer). Skipped only well within the grace period: the thread's next beat
        comes one interval later, before the trial could go stale."""
        at = self._beat_at().pop(trial_id, None)
        interval = self.heartbeat_interval
        if at is not None and interval:
            grace = self.grace_period or 2 * interval
            if time.monotonic() - at < min(interval, grace - interval) / 2:
                return
        super().record_heartbeat(trial_id)

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        for key in (
            "_core_stmts",
            "_auto_engine",
            "_beats",
            "_end_times",
            "_ending",
            "_retry_owed",
        ):
            state.pop(key, None)
        return state

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        if state == TrialState.RUNNING and self._beats_on_create():
            # A WAITING trial (a retry) about to start: its heartbeat first, for the reason
            # given in _get_prepared_new_trial (harmless if another process starts it).
            super().record_heartbeat(trial_id)
            self._beat_written(trial_id)
        return self._capped_state(trial_id, state, lambda: self._set_state(trial_id, state, values))
