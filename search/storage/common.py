"""What every storage module shares: the service's storage constants and errors, and the
storage API the service uses (StudyStorage)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

DEFAULT_STORAGE = "sqlite:///studies/optuna.db"
ENV_VAR = "OPTUNA_STORAGE"
SQLITE_TIMEOUT_S = 120
SCHEMES = ("sqlite", "postgresql", "mysql", "grpc")
RECONNECT_S = 120.0
# A worker behind the gRPC proxy records its heartbeat as this trial system attr; the
# proxy's storage writes a heartbeat row instead of storing it.
HEARTBEAT_ATTR = "optuna_run:heartbeat"
# PostgreSQL advisory locks of this service: (LOCK_CLASS, 0) guards schema creation,
# (LOCK_CLASS, study_id) the start of a trial in a study with a trial cap.
LOCK_CLASS = 0x4F505452
SETUP_KEY = 0
CLAIMED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
# user attrs that say how a trial's run ended: a retry of a stale trial starts without them
RUN_OUTCOME_ATTRS = ("fail_reason", "prune_reason")


def as_retried(trial: FrozenTrial) -> FrozenTrial:
    """The failed trial as its retry copies it: its user attrs without those that say how
    that run ended (RUN_OUTCOME_ATTRS), which the retry's own run writes if it ends so."""
    t = copy.deepcopy(trial)
    t.user_attrs = {k: v for k, v in t.user_attrs.items() if k not in RUN_OUTCOME_ATTRS}
    return t


class RetryStale:
    """The stale-trial callback of every storage of the service: Optuna's retry (`retry`,
    its params queued again up to max_retry times) of the trial `as_retried` makes."""

    def __init__(self, retry: Callable[[optuna.Study, FrozenTrial], None]) -> None:
        self.retry = retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.retry(study, as_retried(trial))


# a URL query key naming a secret holds one of these (password, sslpassword, passwd, pwd,
# passfile, a token, a secret)
SECRET_KEY_PARTS = ("pass", "pwd", "secret", "token")
TRANSIENT = (
    "locked",
    "unique",
    "duplicate",
    "already exists",
    "deadlock",
    "concurrently",
    "could not serialize",
)


class StorageError(RuntimeError):
    """A storage URL that cannot be used; the message never holds a password."""


class StudyFull(RuntimeError):
    """The study holds `max_trials` COMPLETE, PRUNED or RUNNING trials: start no other."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class StudyStorage(BaseStorage):
    """What `make_storage` returns, on either path (search/storage/_optuna, stock.py): an
    Optuna storage with what the service adds: `count`, `close`, `write_user_attrs`, and
    where it lives for messages (`display`, its password masked; `display_url`, the URL to
    scrub from errors)."""

    heartbeat_interval: int | None
    reconnect_s: float
    display: str
    display_url: str

    def count(self, study_id: int, states: Sequence[TrialState] = CLAIMED) -> int:
        """Trials of the study in `states` (default COMPLETE, PRUNED, RUNNING)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def write_user_attrs(self, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
        """`trial.set_user_attr` for each item (a storage with a batch: one write)."""
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
