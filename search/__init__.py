"""The search service: a study of LSTM hyperparameters on market panel data, run with Optuna.

The Python API (see search.api), Optuna-style, every argument keyword-only:

    import search
    db = "sqlite:///studies/optuna.db"
    cfg = search.load_config(path="studies/default.toml", device="cpu")
    study = search.run_study(config=cfg, storage=db, n_trials=20)
    search.confirm(study_name=study.study_name, storage=db)
    ckpt = search.train(study_name=study.study_name, storage=db)
    df = search.predict(model=f"studies/{study.study_name}-model.pt", dates="test")
    live = search.stream_predictor(model=f"studies/{study.study_name}-model.pt")
    preds = live.predict(todays_rows)  # one date's rows at a time, in date order

Every name is imported on first use, so `optuna-run` starts (and a Ctrl-C in its first
seconds is handled) before torch and the API are loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from data.lazy import lazy_dir, lazy_names

if TYPE_CHECKING:
    from data import ConfigError, DataError
    from data.errors import DataWarning
    from search.api import (
        confirm,
        export,
        load_config,
        load_study,
        predict,
        report,
        run_study,
        stream_predictor,
        train,
        verdict,
    )
    from search.config.schema import RunConfig, build_config
    from search.config.space import SearchSpace, TrialParams
    from search.dashboard import DashboardError
    from search.evaluate.export import ExportError
    from search.evaluate.report import ReportError
    from search.evaluate.stream import StreamPredictor
    from search.storage.rdb import StorageError
    from search.study.create import IncompatibleStudy
    from search.study.session import RunError

# public name -> the module that holds it
_LAZY = {
    **dict.fromkeys(
        [
            "load_config",
            "run_study",
            "load_study",
            "confirm",
            "train",
            "predict",
            "stream_predictor",
            "verdict",
            "export",
            "report",
        ],
        "search.api",
    ),
    "RunConfig": "search.config.schema",
    "build_config": "search.config.schema",
    "SearchSpace": "search.config.space",
    "TrialParams": "search.config.space",
    "RunError": "search.study.session",
    "ConfigError": "data",
    "DataError": "data",
    "DataWarning": "data.errors",
    "StorageError": "search.storage.rdb",
    "IncompatibleStudy": "search.study.create",
    "ExportError": "search.evaluate.export",
    "ReportError": "search.evaluate.report",
    "StreamPredictor": "search.evaluate.stream",
    "DashboardError": "search.dashboard",
}

__all__ = [
    "ConfigError",
    "DashboardError",
    "DataError",
    "DataWarning",
    "ExportError",
    "IncompatibleStudy",
    "ReportError",
    "RunConfig",
    "RunError",
    "SearchSpace",
    "StorageError",
    "StreamPredictor",
    "TrialParams",
    "build_config",
    "confirm",
    "export",
    "load_config",
    "load_study",
    "predict",
    "report",
    "run_study",
    "stream_predictor",
    "train",
    "verdict",
]


if not TYPE_CHECKING:  # mypy reads the imports above; an unknown name stays an error
    __getattr__ = lazy_names(__name__, _LAZY, globals())
    __dir__ = lazy_dir(_LAZY, globals())
