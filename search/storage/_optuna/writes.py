"""The fast write path: a running trial's writes and its end as SQL Core statements."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
)
from optuna.storages import RDBStorage
from optuna.storages._rdb import models as rdb_models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from search.storage._optuna.statements import _from_utc, _to_utc, _value_rows, core_statements
from search.storage.common import HEARTBEAT_ATTR


class FastWrites(RDBStorage):
    """Optuna's RDBStorage with a running trial's writes (reports, params, attrs) and its end
    made as SQL Core statements over Optuna's own tables, without the ORM's session,
    identity map and flush; the same checks, in the same order, and the same rows."""

    def _core(self) -> dict[str, Any] | None:
        """The statements of this storage's dialect, built once (see core_statements)."""
        built = self.__dict__.get("_core_stmts", False)
        if built is False:
            built = self.__dict__["_core_stmts"] = core_statements(self.engine)
        return built

    def _guarded(self, stmts: dict[str, Any], name: str, row: dict[str, Any]) -> bool:
        """Run the one-statement write `name` (see guarded_statements) if this dialect has
        it; True if it wrote, False if the caller must take the transaction's way."""
        stmt = stmts.get("g_" + name)
        if stmt is None:
            return False
        with self._auto().connect() as con:
            return con.execute(stmt, {"g_trial_id": row["trial_id"], **row}).first() is not None

    def _auto(self) -> Any:
        """The engine's pool, its connections in autocommit mode (psycopg switches it on
        the client: no round trip): a statement outside a transaction block commits alone."""
        engine = self.__dict__.get("_auto_engine")
        if engine is None:
            engine = self.__dict__["_auto_engine"] = self.engine.execution_options(
                isolation_level="AUTOCOMMIT"
            )
        return engine

    def _lock_running(self, con: Any, trial_id: int) -> None:
        """Lock the trial's row (PostgreSQL) and refuse a missing or finished trial, as
        Optuna's writes do. On PostgreSQL the same statement lets this transaction commit
        without waiting for its WAL to reach the disk (`set_config('synchronous_commit',
        'off', true)`, for this transaction only): used only for what a running trial
        writes (reports, params, attrs). Its end (COMPLETE, PRUNED, FAIL) still commits
        synchronously, which flushes every earlier record of the log with it, so a finished
        trial is durable with everything it wrote; a server crash can lose at most the last
        fraction of a second of a still-running trial's writes, and that trial is failed and
        re-run by the heartbeat."""
        stmts = self._core()
        assert stmts is not None
        row = con.execute(stmts["lock"], {"lock_trial_id": trial_id}).first()
        if row is None:
            raise KeyError(rdb_models.NOT_FOUND_MSG)
        self.check_trial_is_updatable(trial_id, row[0])

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        """Optuna's write (the trial must be unfinished; an existing step is overwritten) as
        two SQL Core statements in one transaction, without the ORM's session, identity map
        and flush: the per-epoch report is the most frequent write of a study."""
        stmts = self._core()
        if stmts is None:
            super().set_trial_intermediate_value(trial_id, step, intermediate_value)
            return
        iv = rdb_models.TrialIntermediateValueModel
        stored, kind = iv.intermediate_value_to_stored_repr(intermediate_value)
        row = {
            "trial_id": trial_id,
            "step": step,
            "intermediate_value": stored,
            "intermediate_value_type": kind,
        }
        if self._guarded(stmts, "report", row):
            return
        with self.engine.begin() as con:
            self._lock_running(con, trial_id)
            con.execute(stmts["report"], row)

    def _set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
        previous_distribution: BaseDistribution | None,
    ) -> None:
        """Optuna's write of a suggested param; once the study's distribution of that param
        is known (the trial cache passes it after the first trial), as SQL Core statements
        in one transaction: the same checks (distribution compatible, trial unfinished), a
        fraction of the ORM's time. The first time, Optuna's own path looks it up."""
        stmts = self._core()
        if previous_distribution is None or stmts is None:
            super()._set_trial_param(
                trial_id, param_name, param_value_internal, distribution, previous_distribution
            )
            return
        try:
            check_distribution_compatibility(previous_distribution, distribution)
        except ValueError:
            self._check_unfinished(trial_id)  # Optuna refuses a finished trial first
            raise
        row = {
            "trial_id": trial_id,
            "param_name": param_name,
            "param_value": param_value_internal,
            "distribution_json": distribution_to_json(distribution),
        }
        if self._guarded(stmts, "param", row):
            return
        with self.engine.begin() as con:
            self._lock_running(con, trial_id)
            con.execute(stmts["param"], row)

    def _check_unfinished(self, trial_id: int) -> None:
        """KeyError for a missing trial, UpdateFinishedTrialError for a finished one."""
        t = rdb_models.TrialModel.__table__
        with self.engine.connect() as con:
            row = con.execute(select(t.c.state).where(t.c.trial_id == trial_id)).first()
        if row is None:
            raise KeyError(rdb_models.NOT_FOUND_MSG)
        self.check_trial_is_updatable(trial_id, row[0])

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.set_trial_user_attrs(trial_id, {key: value})

    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Several user attrs of a running trial in one transaction (one commit, not one
        per key as `set_trial_user_attr` makes them)."""
        self._set_attrs(rdb_models.TrialUserAttributeModel, trial_id, attrs)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if key == HEARTBEAT_ATTR:  # a heartbeat sent through the gRPC proxy
            self.record_heartbeat(trial_id)
            return
        # e.g. the rung values successive halving and Hyperband store at every rung
        self._set_attrs(rdb_models.TrialSystemAttributeModel, trial_id, {key: value})

    def _set_attrs(self, model: Any, trial_id: int, attrs: dict[str, Any]) -> None:
        """Optuna's attr write (the trial must be unfinished; a key is overwritten) for
        several keys, as SQL Core upserts in one transaction."""
        stmts = self._core()
        if stmts is None:
            with _create_scoped_session(self.scoped_session, True) as session:
                for key, value in attrs.items():
                    self._set_trial_attr_without_commit(session, model, trial_id, key, value)
            return
        if not attrs:
            return
        user = model is rdb_models.TrialUserAttributeModel
        rows = [
            {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()
        ]
        kind = "user" if user else "system"
        if len(rows) == 1 and self._guarded(stmts, kind, rows[0]):
            return
        with self.engine.begin() as con:
            self._lock_running(con, trial_id)
            con.execute(stmts[kind], rows)

    def _set_state(self, trial_id: int, state: TrialState, values: Sequence[float] | None) -> bool:
        """Optuna's state change; a trial's end (COMPLETE, PRUNED, FAIL) as SQL Core
        statements in one transaction, committed synchronously: the row locked, the trial
        checked unfinished, its values upserted, its state and completion time set.

        A retry of the same end (its first try committed, then the connection dropped
        before the reply came) finds the trial in that state with that completion time,
        written by the first try, and succeeds instead of refusing a finished trial."""
        stmts = self._core()
        if stmts is None or not state.is_finished():
            return super().set_trial_state_values(trial_id, state, values)
        done = self._end_time(trial_id, state)
        if (
            "g_end" in stmts
            and len(values or ()) <= 1
            and self._end_running(stmts, trial_id, state, values, done)
        ):
            self._ended_now(trial_id, done)
            return True
        try:
            with self.engine.begin() as con:
                row = con.execute(stmts["lock_sync"], {"lock_trial_id": trial_id}).first()
                if row is None:
                    raise KeyError(rdb_models.NOT_FOUND_MSG)
                if row[0] != state or row[1] != _to_utc(done):  # else: its earlier try's
                    self.check_trial_is_updatable(trial_id, row[0])
                    rows = _value_rows(trial_id, values)
                    if rows:
                        con.execute(stmts["values"], rows)
                    con.execute(
                        stmts["end"],
                        {
                            "end_trial_id": trial_id,
                            "state": state,
                            "datetime_complete": _to_utc(done),
                        },
                    )
        except IntegrityError:
            return False
        self._ended_now(trial_id, done)
        return True

    def _end_running(
        self,
        stmts: dict[str, Any],
        trial_id: int,
        state: TrialState,
        values: Sequence[float] | None,
        done: datetime,
    ) -> bool:
        """PostgreSQL: a RUNNING trial's end as one statement (see guarded_statements);
        False if the trial was not RUNNING (the transaction's way then says why)."""
        row: dict[str, Any] = {
            "g_trial_id": trial_id,
            "state": state,
            "datetime_complete": _to_utc(done),
        }
        if values:
            row.update(_value_rows(trial_id, values)[0])
        with self._auto().connect() as con:
            stmt = stmts["g_end_value" if values else "g_end"]
            return con.execute(stmt, row).first() is not None

    def _end_time(self, trial_id: int, state: TrialState) -> datetime:
        """The completion time of the trial's end in progress: now, or the one its earlier
        try (to the same state) wrote, so that a retry recognises its own write."""
        pending = self.__dict__.setdefault("_ending", {})
        if len(pending) > 1024:  # ends that failed for good and were never retried
            pending.clear()
        held = pending.get(trial_id)
        if held is not None and held[0] == state:
            return held[1]
        done = datetime.now()
        pending[trial_id] = (state, done)
        return done

    def _ended_now(self, trial_id: int, done: datetime) -> None:
        self.__dict__.setdefault("_ending", {}).pop(trial_id, None)
        ended = self._ended()
        if len(ended) > 1024:  # ends nobody asked for (e.g. stale trials failed here)
            ended.clear()
        ended[trial_id] = done

    def _ended(self) -> dict[int, datetime]:
        """Trial id -> the completion time this process just wrote, until read once."""
        return self.__dict__.setdefault("_end_times", {})

    def completed_at(self, trial_id: int) -> datetime | None:
        """The trial's datetime_complete as Optuna reads it back (naive local time; it is
        stored as naive UTC), as written here when it was."""
        done = self._ended().pop(trial_id, None)
        if done is not None:
            return done
        t = rdb_models.TrialModel.__table__
        with self.engine.connect() as con:
            query = select(t.c.datetime_complete).where(t.c.trial_id == trial_id)
            stored = con.execute(query).scalar_one()
        return None if stored is None else _from_utc(stored)
