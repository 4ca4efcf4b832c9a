"""The SQL Core statements of the fast write path, over Optuna's own table definitions
(optuna.storages._rdb.models): a running trial's writes, its creation and its end."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from optuna.storages._rdb import models as rdb_models
from optuna.trial import TrialState
from sqlalchemy import bindparam, func, select, text, true
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine


def _to_utc(local: datetime) -> datetime:
    """A naive local time as Optuna's RDB storage stores it: naive UTC."""
    return local.astimezone(timezone.utc).replace(tzinfo=None)


def _from_utc(stored: datetime) -> datetime:
    """A stored naive-UTC time as Optuna reads it back: naive local time."""
    return stored.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)


# INSERT ... ON CONFLICT DO UPDATE by dialect (SQLite >= 3.24 has it)
_UPSERT: dict[str, Callable[..., Any]] = {"postgresql": pg_dialect.insert}
if sqlite3.sqlite_version_info >= (3, 24, 0):
    _UPSERT["sqlite"] = sqlite_dialect.insert


def core_statements(engine: Engine) -> dict[str, Any] | None:
    """The SQL Core statements of a running trial's writes, built once per storage
    (building one costs more Python time than running it), executed with parameters;
    None where the dialect has no upsert (Optuna's ORM writes are used there)."""
    dialect = engine.dialect.name
    stmts: dict[str, Any] | None = None
    if dialect in _UPSERT:
        trials = rdb_models.TrialModel.__table__
        cols: list[Any] = [trials.c.state]
        if dialect == "postgresql":
            # See _lock_running: this transaction commits without waiting for the WAL.
            cols.append(func.set_config(text("'synchronous_commit'"), text("'off'"), true()))
        where = trials.c.trial_id == bindparam("lock_trial_id")
        stmts = {
            "lock": select(*cols).where(where).with_for_update(),
            "lock_sync": select(trials.c.state, trials.c.datetime_complete)
            .where(where)
            .with_for_update(),
            "end": trials.update()
            .where(trials.c.trial_id == bindparam("end_trial_id"))
            .values(state=bindparam("state"), datetime_complete=bindparam("datetime_complete")),
        }

        def upsert(model: Any, keys: list[str], updated: list[str]) -> Any:
            table = model.__table__
            insert = _UPSERT[dialect](table)
            return insert.on_conflict_do_update(
                index_elements=[table.c[k] for k in keys],
                set_={k: insert.excluded[k] for k in updated},
            )

        stmts["report"] = upsert(
            rdb_models.TrialIntermediateValueModel,
            ["trial_id", "step"],
            ["intermediate_value", "intermediate_value_type"],
        )
        if engine.dialect.insert_returning:
            studies = rdb_models.StudyModel.__table__
            study_where = studies.c.study_id == bindparam("lock_study_id")
            stmts["lock_study"] = select(studies.c.study_id).where(study_where).with_for_update()
            stmts["new"] = trials.insert().returning(trials.c.trial_id)
            stmts["count_before"] = (
                select(func.count())
                .select_from(trials)
                .where(
                    trials.c.study_id == bindparam("count_study_id"),
                    trials.c.trial_id < bindparam("count_trial_id"),
                )
            )
            stmts["number"] = (
                trials.update()
                .where(trials.c.trial_id == bindparam("number_trial_id"))
                .values(number=bindparam("number"))
            )
            beats = rdb_models.TrialHeartbeatModel.__table__
            stmts["beat"] = beats.insert().values(heartbeat=func.current_timestamp())
        params = rdb_models.TrialParamModel.__table__
        # Optuna ignores a second write of a param (e.g. a write retried after its
        # commit's reply was lost): so does this.
        stmts["param"] = _UPSERT[dialect](params).on_conflict_do_nothing(
            index_elements=[params.c.trial_id, params.c.param_name]
        )
        stmts["values"] = upsert(
            rdb_models.TrialValueModel, ["trial_id", "objective"], ["value", "value_type"]
        )
        for name, model in (
            ("user", rdb_models.TrialUserAttributeModel),
            ("system", rdb_models.TrialSystemAttributeModel),
        ):
            stmts[name] = upsert(model, ["trial_id", "key"], ["value_json"])
        if dialect == "postgresql":
            # (on SQLite, where a round trip is a function call, the one-statement
            # writes measured slower than the transactions: 415 us a report, not 282)
            stmts.update(guarded_statements())
    return stmts


def guarded_statements() -> dict[str, Any]:
    """PostgreSQL: each write of a running trial (report, param, one attr) as one
    statement, run outside a transaction block: the trial's row locked and checked
    RUNNING, the row upserted, the commit not waiting for the WAL flush (as
    _lock_running explains), in one round trip instead of five (BEGIN, lock, write,
    COMMIT and the pool's ping). RETURNING tells whether it wrote: a trial that is not
    RUNNING (finished, missing, or WAITING) writes nothing here and goes the
    transaction's way, which raises Optuna's error or writes. Also a trial's creation
    (after the study's lock) and its end as one statement each."""
    trials = rdb_models.TrialModel.__table__

    def running(name: str, *extra: Any) -> Any:
        """The trial's row, locked, if it is RUNNING (no row otherwise)."""
        return (
            select(trials.c.trial_id.label("tid"), *extra)
            .where(
                trials.c.trial_id == bindparam("g_trial_id"),
                trials.c.state == TrialState.RUNNING,
            )
            .with_for_update()
            .cte(name)
        )

    sync_off = func.set_config(text("'synchronous_commit'"), text("'off'"), true())
    live = running("live", sync_off.label("sc"))

    def guarded(model: Any, keys: list[str], updated: list[str] | None) -> Any:
        table = model.__table__
        cols = [c.name for c in table.c if c.name != "trial_id" and not c.primary_key]
        src = select(live.c.tid, *[bindparam(c, type_=table.c[c].type) for c in cols]).select_from(
            live
        )
        insert = pg_dialect.insert(table).from_select(["trial_id", *cols], src)
        index = [table.c[k] for k in keys]
        if updated is None:
            insert = insert.on_conflict_do_nothing(index_elements=index)
        else:
            insert = insert.on_conflict_do_update(
                index_elements=index, set_={k: insert.excluded[k] for k in updated}
            )
        return insert.returning(table.c.trial_id)

    writes = {
        "g_report": guarded(
            rdb_models.TrialIntermediateValueModel,
            ["trial_id", "step"],
            ["intermediate_value", "intermediate_value_type"],
        ),
        "g_param": guarded(rdb_models.TrialParamModel, ["trial_id", "param_name"], None),
        "g_user": guarded(rdb_models.TrialUserAttributeModel, ["trial_id", "key"], ["value_json"]),
        "g_system": guarded(
            rdb_models.TrialSystemAttributeModel, ["trial_id", "key"], ["value_json"]
        ),
    }
    # A trial's end with one value or none: locked and checked RUNNING, value upserted,
    # state and completion time set; committed synchronously (no set_config here).
    ended = running("ended")
    values = rdb_models.TrialValueModel.__table__
    value_src = select(
        ended.c.tid,
        bindparam("objective", type_=values.c.objective.type),
        bindparam("value", type_=values.c.value.type),
        bindparam("value_type", type_=values.c.value_type.type),
    ).select_from(ended)
    value_insert = pg_dialect.insert(values).from_select(
        ["trial_id", "objective", "value", "value_type"], value_src
    )
    value_upsert = value_insert.on_conflict_do_update(
        index_elements=[values.c.trial_id, values.c.objective],
        set_={k: value_insert.excluded[k] for k in ("value", "value_type")},
    ).cte("upserted")
    end = (
        trials.update()
        .where(trials.c.trial_id == ended.c.tid)
        .values(
            state=bindparam("state", type_=trials.c.state.type),
            datetime_complete=bindparam("datetime_complete", type_=trials.c.datetime_complete.type),
        )
        .returning(trials.c.trial_id)
    )
    # A new trial once the study's row is locked: inserted with its number (the
    # study's trials so far, all older under that lock) and, with heartbeats on, its
    # first heartbeat, in one statement (the count must come after the lock: a
    # statement's snapshot is taken before it waits for a lock).
    counted = select(
        func.count(),
        bindparam("n_study_id", type_=trials.c.study_id.type),
        bindparam("n_state", type_=trials.c.state.type),
        bindparam("n_start", type_=trials.c.datetime_start.type),
    ).where(trials.c.study_id == bindparam("n_study_id"))
    new = (
        pg_dialect.insert(trials)
        .from_select(["number", "study_id", "state", "datetime_start"], counted)
        .returning(trials.c.trial_id, trials.c.number)
        .cte("new")
    )
    beats = rdb_models.TrialHeartbeatModel.__table__
    beat = (
        beats.insert()
        .from_select(["trial_id", "heartbeat"], select(new.c.trial_id, func.current_timestamp()))
        .cte("beat")
    )
    return {
        "g_end": end.add_cte(ended),
        "g_end_value": end.add_cte(ended).add_cte(value_upsert),
        "g_new": select(new.c.trial_id, new.c.number),
        "g_new_beat": select(new.c.trial_id, new.c.number).add_cte(beat),
        **writes,
    }


def _value_rows(trial_id: int, values: Sequence[float] | None) -> list[dict[str, Any]]:
    """The trial_values rows of a trial's end, stored as Optuna stores them."""
    rows = []
    for objective, v in enumerate(values or ()):
        stored, kind = rdb_models.TrialValueModel.value_to_stored_repr(v)
        rows.append(
            {"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind}
        )
    return rows
