"""The fence around Optuna's private API (search/storage/_optuna): the fast path only with
the Optuna releases it was tested with; any other Optuna (simulated here) takes the stock
path with one line on stderr, and a study reads the same whichever path wrote it."""

from __future__ import annotations

import json
import os
import warnings
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from search.storage import StockStorage, StudyFull, _optuna, make_storage
from search.storage.retry import with_retries
from search.study.objective import set_user_attrs

FORCED = os.environ.get(_optuna.STOCK_ENV) == "1"


@pytest.fixture
def outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's Optuna reads as a release the fast path was not tested with."""
    monkeypatch.delenv(_optuna.STOCK_ENV, raising=False)
    monkeypatch.setattr(optuna, "__version__", "5.2.0")
    monkeypatch.setattr(_optuna, "_reason", _optuna._UNSET)


def test_the_tested_range_and_schema_decide_the_path():
    assert _optuna.decide("5.0.0", "v3.2.0.a") is None
    assert _optuna.decide("5.1.3", "v3.2.0.a") is None
    for version in ("4.9.0", "5.2.0", "6.0.0", "dev"):
        assert _optuna.decide(version, "v3.2.0.a") == (
            f"Optuna {version} is not one the storage was tested with (5.0 - 5.1)"
        )
    assert "storage schema v4.0.0.a is not one" in str(_optuna.decide("5.1.0", "v4.0.0.a"))


@pytest.mark.skipif(FORCED, reason=f"{_optuna.STOCK_ENV}=1 forces the stock path")
def test_the_installed_optuna_takes_the_fast_path(tmp_path):
    """Fails when the installed Optuna (in the tested range) lacks a private name the fast
    path uses: its modules raise at import, and the stock path would be taken."""
    assert _optuna.decide(optuna.__version__, _optuna.schema_head()) is None
    assert _optuna._load() is None
    storage = make_storage(f"sqlite:///{tmp_path / 'f.db'}", heartbeat_interval=None)
    assert type(storage).__name__ == "ServiceCache"
    storage.close()


def test_a_storage_call_missing_from_its_class_raises_at_once():
    with pytest.raises(AttributeError, match="has no _renamed_call to retry"):
        with_retries("_renamed_call")(type("Renamed", (RDBStorage,), {}))


def test_an_untested_optuna_takes_the_stock_path_with_one_line(outside, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = make_storage(url, heartbeat_interval=5, max_trials=2)
    again = make_storage(url, heartbeat_interval=5, max_trials=2)
    assert isinstance(storage, StockStorage) and isinstance(again, StockStorage)
    assert _optuna.fast("hyperband") is None
    assert capsys.readouterr().err.splitlines() == [
        "optuna-run: Optuna 5.2.0 is not one the storage was tested with (5.0 - 5.1); using "
        "Optuna's stock storage (RDBStorage, its heartbeat and retries: slower, same results)"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(study_name="cap", storage=storage)
        study.ask()
        study.tell(study.ask(), 1.0)
        with pytest.raises(StudyFull, match=r"2 finished, running or queued trials"):
            study.ask()  # the trial cap holds on the stock path too
    storage.close()
    again.close()


def _write(url: str) -> None:
    storage = make_storage(url, heartbeat_interval=None)
    study = optuna.create_study(
        study_name="same", storage=storage, sampler=optuna.samplers.RandomSampler(seed=3)
    )
    for x in (0.1, 0.4, 0.7, 0.9):
        study.enqueue_trial({"x": x})

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        k = trial.suggest_categorical("k", ["a", "b"])
        for step in range(3):
            trial.report(x * step, step)
        set_user_attrs(trial, {"k2": k * 2, "fold_values": [x, None]})
        trial.storage.set_trial_system_attr(trial._trial_id, "seen", step)
        if x > 0.8:
            raise optuna.TrialPruned()
        if x == 0.7:
            raise ValueError("a failed trial")
        return x * x

    study.optimize(objective, n_trials=4, catch=(ValueError,))
    storage.close()


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if "datetime" not in k}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _dashboard(url: str, path: str) -> Any:
    from optuna_dashboard import wsgi

    app = wsgi(url)
    environ: dict[str, Any] = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    body = b"".join(app(environ, lambda *_: None))
    return json.loads(body)


def _read(url: str) -> tuple[list[tuple[Any, ...]], Any]:
    trials = optuna.load_study(study_name="same", storage=url).get_trials()
    rows = [
        (t.number, t.state, t.values, t.params, t.distributions, t.user_attrs)
        + (t.system_attrs, t.intermediate_values, t.datetime_complete is not None)
        for t in trials
    ]
    (summary,) = _dashboard(url, "/api/studies")["study_summaries"]
    detail = _dashboard(url, f"/api/studies/{summary['study_id']}")
    return rows, _without_times({"summary": summary, "detail": detail})


def test_a_study_reads_the_same_whichever_path_wrote_it(tmp_path, monkeypatch):
    fast_url, stock_url = f"sqlite:///{tmp_path / 'fast.db'}", f"sqlite:///{tmp_path / 'stock.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _write(fast_url)
        monkeypatch.setenv(_optuna.STOCK_ENV, "1")
        monkeypatch.setattr(_optuna, "_reason", _optuna._UNSET)
        _write(stock_url)
        fast_rows, fast_api = _read(fast_url)
        stock_rows, stock_api = _read(stock_url)
    assert [r[1] for r in fast_rows] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.PRUNED,
    ]
    assert fast_rows == stock_rows
    assert fast_api == stock_api
    assert len(fast_api["detail"]["trials"]) == 4


def test_reading_is_the_same_for_a_stock_written_file_opened_fast(tmp_path, monkeypatch):
    """A study the stock path wrote, opened by the fast path (an upgrade back into the
    tested range), lists the same trials as Optuna's own storage lists them."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monkeypatch.setenv(_optuna.STOCK_ENV, "1")
        monkeypatch.setattr(_optuna, "_reason", _optuna._UNSET)
        _write(url)
        monkeypatch.delenv(_optuna.STOCK_ENV)
        monkeypatch.setattr(_optuna, "_reason", _optuna._UNSET)
        ours = make_storage(url, heartbeat_interval=None)
        mine = optuna.load_study(study_name="same", storage=ours).get_trials()
        theirs = optuna.load_study(study_name="same", storage=url).get_trials()
    assert mine == theirs
    ours.close()
