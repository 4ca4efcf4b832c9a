"""Our storages behave as Optuna's own storage tests require (tests/optuna_suite runs those):
the cases that once differed, each checked here on our storage directly."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.study import StudyDirection
from optuna.trial import TrialState

from search.storage import make_storage, storage_backend
from tests.search_tests.studyrun import fresh_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'o.db'}"
        return
    yield from fresh_database(request.getfixturevalue("pg_url"))


def test_a_deleted_study_takes_its_running_trials_with_it(url):
    """SQLite gives a deleted study's id to the next study created: none of the deleted
    study's trials may be listed in it, nor read as RUNNING."""
    storage = make_storage(url, heartbeat_interval=None)
    sid = storage.create_new_study([StudyDirection.MINIMIZE])
    tid = storage.create_new_trial(sid)
    storage.delete_study(sid)
    with pytest.raises(KeyError):
        storage.get_trial(tid)
    sid2 = storage.create_new_study([StudyDirection.MINIMIZE])
    assert storage.get_all_trials(sid2) == []
    storage.close()


def test_a_param_on_a_finished_trial_is_refused_as_finished_first(url):
    """Optuna checks the trial's state before the param's distribution."""
    storage = make_storage(url, heartbeat_interval=None)
    sid = storage.create_new_study([StudyDirection.MINIMIZE])
    first = storage.create_new_trial(sid)
    storage.set_trial_param(first, "x", 0.5, FloatDistribution(0, 1))
    done = storage.create_new_trial(sid)
    storage.set_trial_state_values(done, TrialState.COMPLETE, [1.0])
    with pytest.raises(UpdateFinishedTrialError):
        storage.set_trial_param(done, "x", 0, CategoricalDistribution(["a", "b"]))
    running = storage.create_new_trial(sid)
    with pytest.raises(ValueError, match="distribution"):
        storage.set_trial_param(running, "x", 0, CategoricalDistribution(["a", "b"]))
    storage.close()


def test_stale_trials_are_reported_and_their_callback_called(url):
    """The RDB storage reports its stale trials as Optuna's does (without failing them);
    Optuna's fail_stale_trials then fails each and calls the stale-trial callback."""
    called: list[int] = []
    storage = make_storage(
        url,
        heartbeat_interval=1,
        grace_period=2,
        stale_trial_callback=lambda study, trial: called.append(trial.number),
    )
    backend = storage_backend(storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(storage=backend)
        trial = study.ask()
        backend.record_heartbeat(trial._trial_id)
        time.sleep(3)
        assert backend._get_stale_trial_ids(study._study_id) == [trial._trial_id]
        assert backend._get_stale_trial_ids(study._study_id) == [trial._trial_id]
        optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == TrialState.FAIL
    assert called == [0]
    storage.close()


def test_a_heartbeat_is_recorded_without_an_interval(url):
    """As Optuna's: a storage opened without heartbeats still records one when asked."""
    storage = make_storage(url, heartbeat_interval=None)
    backend = storage_backend(storage)
    sid = storage.create_new_study([StudyDirection.MINIMIZE])
    tid = storage.create_new_trial(sid)
    backend.record_heartbeat(tid)
    backend.heartbeat_interval, backend.grace_period = 1, 1
    time.sleep(2.2)
    assert backend._get_stale_trial_ids(sid) == [tid]
    storage.close()


@pytest.mark.parametrize("bad", [{"grace_period": -1}, {"heartbeat_interval": -1}])
def test_a_negative_heartbeat_setting_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="positive integer"):
        make_storage(f"sqlite:///{tmp_path / 'n.db'}", **{"heartbeat_interval": None, **bad})


def test_heartbeats_warn_nothing(tmp_path):
    """Deliberate (Optuna's test_heartbeat_experimental_warnings expects one): every run
    opens its storage with heartbeats on, and its output carries no ExperimentalWarning."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        storage = make_storage(f"sqlite:///{tmp_path / 'w.db'}", heartbeat_interval=2)
        study = optuna.create_study(storage=storage)
        study.optimize(lambda _: 1.0, n_trials=1)
    assert [w for w in seen if issubclass(w.category, optuna.exceptions.ExperimentalWarning)] == []
    storage.close()
