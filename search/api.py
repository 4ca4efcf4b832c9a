"""The search service's Python API: what `optuna-run` does, callable from a notebook (the
names are re-exported by `search`, whose docstring has an example). Every argument is
keyword-only; `storage` None means $OPTUNA_STORAGE, else sqlite:///studies/optuna.db. Bad
input raises before any trial starts or any file is written: ConfigError (a config key, an
argument), DataError (the data file or rows, a column), StorageError (the storage, its password
masked), IncompatibleStudy, ExportError, ReportError, DashboardError; each message is one
line that names what is at fault. Progress and summaries go to stderr, as from the CLI.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data import ConfigError

if TYPE_CHECKING:
    import optuna
    import polars as pl
    import torch

    from search.config.schema import RunConfig
    from search.evaluate.stream import StreamPredictor

DEVICES_HELP = "auto (CUDA when available), cpu, cuda or cuda:N"


def say(line: str) -> None:
    """A line of progress, on stderr."""
    print(line, file=sys.stderr, flush=True)


def missing_sqlite(url: str) -> str | None:
    """Why a study cannot be read from `url`: a SQLite file that does not exist (reading a
    study must not create an empty database); None otherwise."""
    from search.storage.rdb import describe

    if not url.startswith("sqlite:///"):
        return None
    path = describe(url).split("?", 1)[0]
    if Path(path).is_file():
        return None
    return (
        f"--storage: no SQLite file {path}: no study has run there "
        "(give the study's --storage, or set $OPTUNA_STORAGE)"
    )


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError([f"--device {name}: CUDA is not available on this machine"])
        if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
            raise ConfigError([f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)"])
        return name
    raise ConfigError([f"--device: expected {DEVICES_HELP}, got {name!r}"])


def _storage_url(storage: str | None) -> str:
    """The storage's URL (None: $OPTUNA_STORAGE, else the default file), checked."""
    import optuna

    from search.storage.rdb import check_url, resolve_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_url(storage)
    check_url(url)
    return url


def load_study(*, study_name: str | None = None, storage: str | None = None) -> optuna.Study:
    """The named study of a storage that holds it (None: the storage's only study); an error
    names the studies that are there. A SQLite file that does not exist is not created.
    Raises StorageError or ConfigError."""
    import optuna

    from search.storage.rdb import describe, make_storage

    url = _storage_url(storage)
    missing = missing_sqlite(url)
    if missing:
        raise ConfigError([missing])
    opened = make_storage(url, heartbeat_interval=None)
    names = [s.study_name for s in optuna.get_all_study_summaries(opened)]
    if study_name is None:
        if len(names) != 1:
            raise ConfigError(
                [f"--study-name: {describe(url)} holds {len(names)} studies, name one: {names}"]
            )
        study_name = names[0]
    if study_name not in names:
        from data.fields import did_you_mean

        hint = did_you_mean(study_name, names)
        raise ConfigError(
            [
                f"--study-name: no study {study_name!r} in {describe(url)}{hint}; "
                f"studies there: {names}"
            ]
        )
    return optuna.load_study(study_name=study_name, storage=opened)


def _stored(study_name: str, storage: str | None, device: str) -> tuple[optuna.Study, torch.device]:
    """What confirm and train start from: the device resolved, then the stored study."""
    import torch

    dev = torch.device(resolve_device(device))
    return load_study(study_name=study_name, storage=storage), dev


def _check(name: str, value: Any, low: float, *, allow: tuple[Any, ...] = (None,)) -> None:
    """An integer argument (a number of seconds for timeout) >= `low`, or one of `allow`."""
    if value in allow and not isinstance(value, bool):
        return
    number = name == "timeout" and isinstance(value, float) and math.isfinite(value)
    if isinstance(value, bool) or not (isinstance(value, int) or number) or value < low:
        what = "a finite number of seconds > 0" if name == "timeout" else f"an integer >= {low}"
        raise ConfigError([f"{name}: expected {what}, got {value!r}"])


def _check_path(name: str, value: Any, *, optional: bool = True, want: str = "a file path") -> None:
    """A file argument: a path (str or os.PathLike), or None where it may be left out; a data
    frame or a loaded checkpoint is named by its type, on one line."""
    from data.fields import shown

    if isinstance(value, (str, os.PathLike)) or (optional and value is None):
        return
    frame = " (data are read from a file: write the frame to Parquet or CSV first)"
    is_frame = type(value).__name__ == "DataFrame"
    raise ConfigError([f"{name}: expected {want}, got {shown(value)}{frame if is_frame else ''}"])


def load_config(
    *,
    path: str | Path | None = None,
    device: str = "auto",
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """The study config: built-in defaults < the TOML at `path` (None: studies/default.toml) <
    `overrides`, laid over the TOML table by table as if written in it (e.g. {"data":
    {"path": "train.parquet"}, "space": {"epochs": 2}}); the [cpu] limits apply when
    `device` is a CPU, but for the keys `overrides` sets. Raises ConfigError, every problem
    at once."""
    from search.config.load import load_config as load

    _check_path("path", value=path, want="the path of a study TOML")
    cpu = resolve_device(device) == "cpu"
    return load(path=path, cpu=cpu, overrides=overrides)


def run_study(
    *,
    config: RunConfig | str | Path | None = None,
    storage: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    workers: int | str = 1,
    max_trials: int | None = None,
    device: str = "auto",
    dashboard: int | None = None,
    quiet: bool = True,
) -> optuna.Study:
    """Run trials of the study (`config`: a RunConfig, or a TOML path for load_config) and
    return it; a study of that name in `storage` is resumed. `n_trials` in all by this call
    (None: until `timeout` seconds, or 100), `workers` processes ("auto": measured),
    `max_trials` the study's finished trials at most, `dashboard` a port served meanwhile;
    `quiet`: no line on stderr (the study's log beside its storage has them all).

    The first SIGINT/SIGTERM ends the running trial as FAIL and starts no other, then
    KeyboardInterrupt is raised; a second one exits the process at once (status 130).
    Raises ConfigError, DataError, StorageError, IncompatibleStudy or DashboardError before
    any trial, StorageError when the storage fails mid-run, RunError when workers failed.
    """
    from search.config.schema import RunConfig
    from search.storage.rdb import StorageError
    from search.storage.urls import check_new_file_folder
    from search.study import session

    if not isinstance(config, RunConfig):
        _check_path("config", config, want="a RunConfig (search.load_config) or a TOML path")
    _check("n_trials", n_trials, 1)
    _check("max_trials", max_trials, 1)
    _check("workers", workers, 1, allow=("auto",))
    _check("dashboard", dashboard, 0)
    if timeout is not None:
        _check("timeout", float(timeout) if isinstance(timeout, int) else timeout, 1e-300)
    url = _storage_url(storage)  # a storage that cannot be used fails before the data load
    check_new_file_folder(url)
    dev = resolve_device(device)
    if isinstance(config, RunConfig) and config.cpu_limits and dev != "cpu":
        raise ConfigError(
            [
                f"config: loaded for a CPU device ([cpu] limits applied) but device {device!r} "
                f"runs it on {dev}: pass load_config the device run_study is given"
            ]
        )
    cfg = config if isinstance(config, RunConfig) else load_config(path=config, device=dev)
    plan = session.prepare(
        cfg, device=dev, workers=workers, seed_where=f"{cfg.config_path}: [search] seed"
    )
    out = session.run(
        plan,
        url,
        n_trials=n_trials,
        timeout=timeout,
        max_trials=max_trials,
        dashboard=dashboard,
        quiet=quiet,
        echo=not quiet,
    )
    if out.errors and plan.workers == 1:
        raise StorageError(out.errors[0])
    if out.errors:
        raise session.RunError(out.study, out.errors)
    if out.interrupted:
        raise KeyboardInterrupt(f"study {cfg.study.name!r} interrupted; run it again to resume")
    return out.study


def confirm(
    *,
    study_name: str,
    storage: str | None = None,
    top: int = 5,
    seeds: int | None = None,
    seed: int | None = None,
    device: str = "auto",
    tree: bool = True,
    quiet: bool = False,
    final: bool = False,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Re-train the `top` best trials, and the configurations the study queued first, with
    `seeds` fresh seeds each (from `seed`; default 5, or 1 with `final`), at the search's
    budget or, with `final`, at the final fit's ([final]); name the winner by the mean and
    store the record in the study (export, train and the summaries then use the winner);
    returns it, with the winner's verdict. With `final`, the winner's networks are the
    final model: saved at `out` (default studies/<study>-model.pt) as `train` saves one,
    `record["model"]` its path. Says each trial and each epoch on stderr (`quiet`: no line
    per epoch). Raises ConfigError (`out` without `final`), ExportError."""
    from search.config.paths import out_problem
    from search.evaluate.confirm import DEFAULT_SEED
    from search.evaluate.confirm import confirm as confirm_study

    seeds = seeds if seeds is not None else (1 if final else 5)
    _check_path("out", out)
    _check("top", top, 1)
    _check("seeds", seeds, 1)
    if out is not None and not final:
        raise ConfigError(
            [
                f"out: a model is saved only by a confirm at the final fit's budget (final=True), "
                f"got out={str(out)!r} without it"
            ]
        )
    path = (Path(out) if out is not None else model_path(study_name)) if final else None
    if path is not None and (problem := out_problem(str(path))):
        raise ConfigError([f"out: {problem}"])
    study, dev = _stored(study_name, storage, device)
    return confirm_study(
        study,
        dev,
        top=top,
        seeds=seeds,
        final=final,
        out=path,
        seed=DEFAULT_SEED if seed is None else seed,
        tree=tree,
        log=say,
        progress=None if quiet else say,
    )


def model_path(study_name: str, exact: bool = False) -> Path:
    """Where `train` writes a study's model by default; with `exact` (a reproduction of the
    trial at the search's budget) a file of its own, so that it never replaces the final
    model the study's verdict names."""
    from search.config.paths import study_file

    return Path(study_file(study_name, "exact-model.pt" if exact else "model.pt"))


def train(
    *,
    study_name: str,
    storage: str | None = None,
    out: str | Path | None = None,
    data: str | None = None,
    device: str = "auto",
    trial: int | None = None,
    seed: int | None = None,
    ensemble: int = 1,
    seeds: int | None = None,
    tree: bool = True,
    exact: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Fit the confirmed winner (else the best trial, or trial number `trial`; the K best
    with `ensemble` K) at the study's final budget ([final]: every training window an epoch,
    early stopping on validation, several seeds), or with `exact` reproduce the trial at the
    search's budget; on the study's data (or `data`), save the checkpoint at `out` (default
    studies/<study>-model.pt) and return it: which fit it is (`fit`), its verdict against
    the baselines, and whether the trial's value was reproduced. Says each epoch on stderr
    (`quiet`: not). Raises ConfigError, DataError, ExportError."""
    from search.evaluate.retrain import train_best

    _check_path("out", out)
    _check_path("data", data)
    _check("trial", trial, 0)
    _check("ensemble", ensemble, 1)
    _check("seeds", seeds, 1)
    study, dev = _stored(study_name, storage, device)
    return train_best(
        study,
        Path(out) if out is not None else model_path(study_name, exact),
        dev,
        data,
        seed=seed,
        trial_number=trial,
        ensemble=ensemble,
        tree=tree,
        n_seeds=seeds,
        exact=exact,
        log=say,
        progress=None if quiet else say,
    )


def predict(
    *,
    model: str | Path,
    data: str | Path | None = None,
    dates: str = "last",
    date_column: str | None = None,
    id_column: str | None = None,
    device: str = "auto",
    stream: bool = False,
) -> pl.DataFrame:
    """Predictions of a trained model (`train`'s checkpoint) on `data` (default: its training
    file): one row per (date, id) window end on the file's last date ("last"), its test
    segment ("test") or every date ("all"), with `prediction`, `target` (the model's scale)
    and `target_raw`; where the checkpoint keeps the verdict's tree, `lgbm` (its prediction)
    and `blend` (the 50/50 per-date rank blend of the two); with "test" on the data the
    model was judged on, `in_verdict` (the verdict's rows). `date_column` / `id_column`
    name another file's columns ("" id: one series). `stream`: the file fed to a
    `stream_predictor` one date at a time instead, as a live loop feeds it (the same
    predictions; no target columns). The data's problems are DataWarnings; raises DataError
    or ConfigError."""
    from search.evaluate.predict import predict_file
    from search.evaluate.stream import stream_file

    _check_path("model", model, optional=False)
    _check_path("data", data)
    if dates not in ("last", "test", "all"):
        raise ConfigError([f"--dates: expected last, test or all, got {dates!r}"])
    ckpt, dev = _checkpoint(model, device, date_column, id_column)
    path = str(data) if data is not None else ckpt["data"]["path"]
    return (stream_file if stream else predict_file)(ckpt, path, dates, dev)


def stream_predictor(
    *,
    model: str | Path,
    device: str = "auto",
    date_column: str | None = None,
    id_column: str | None = None,
) -> StreamPredictor:
    """A trained model (`train`'s checkpoint, loaded once) to be fed one date at a time:
    `.predict(rows)` takes one date's rows (polars or pandas) and returns a prediction per
    row, null for a security without `time_steps` valid dates yet (see StreamPredictor).
    `date_column` / `id_column` name the rows' columns when they differ from the training
    file's ("" id: one series). Raises DataError or ConfigError."""
    from search.evaluate.stream import StreamPredictor

    _check_path("model", model, optional=False)
    ckpt, dev = _checkpoint(model, device, date_column, id_column)
    return StreamPredictor(ckpt, dev)


def _checkpoint(
    model: str | Path, device: str, date_column: str | None, id_column: str | None
) -> tuple[dict[str, Any], torch.device]:
    """The checkpoint at `model` with another file's column names, and the device."""
    import torch

    from search.evaluate.predict import load_checkpoint

    dev = torch.device(resolve_device(device))
    ckpt = load_checkpoint(Path(model))
    ckpt["data"] = with_columns(ckpt["data"], date_column, id_column)
    return ckpt, dev


def with_columns(settings: dict[str, Any], date: str | None, ident: str | None) -> dict[str, Any]:
    """The checkpoint's data settings with the --date / --id column names of another file."""
    s = dict(settings)
    if date:
        s["date"] = date
    if ident is not None:
        s["id"] = ident or None
    return s


def verdict(
    *, model: str | Path | None = None, study_name: str | None = None, storage: str | None = None
) -> dict[str, Any]:
    """The verdict (the model's validation and test metrics against the baselines) of a
    trained `model`, else the one stored in the study by its last confirm or train;
    `search.evaluate.verdict.format_verdict` writes it as the CLI shows it."""
    from search.evaluate.export import ExportError
    from search.evaluate.predict import load_checkpoint

    _check_path("model", model)
    if (model is None) == (study_name is None):
        raise ConfigError(["verdict: give a model, or a study_name (not both)"])
    if model is not None:
        return dict(load_checkpoint(Path(model))["verdict"])
    study = load_study(study_name=study_name, storage=storage)
    found = study.user_attrs.get("verdict")
    if not found:
        raise ExportError(
            f"study {study.study_name!r} has no verdict yet: confirm or train it first"
        )
    return dict(found)


def export(
    *,
    study_name: str,
    out: str | Path,
    storage: str | None = None,
    trials: str | Path | None = None,
) -> dict[str, Any]:
    """Write the study's selected trial (the confirmed winner, else the best; a Pareto front
    for several objectives) as JSON at `out`, and every trial to `trials` (.csv/.parquet)
    when given; returns the JSON record. Raises ExportError, ConfigError, StorageError."""
    from search.evaluate.export import ExportError, check_trials_path, export_best

    _check_path("out", out, optional=False)
    _check_path("trials", trials)
    if trials is not None:  # every argument is checked before anything is written
        check_trials_path(Path(trials))
        if Path(trials).resolve() == Path(out).resolve():
            raise ExportError(f"--trials {trials}: the same file as --out")
    study = load_study(study_name=study_name, storage=storage)
    record = export_best(study, Path(out))
    if trials is not None:
        from search.evaluate.export import export_trials

        record = {**record, "trials_written": export_trials(study, Path(trials))}
    return record


def report(
    *, study_name: str | None = None, storage: str | None = None, out: str | Path | None = None
) -> tuple[Path, list[Path]]:
    """Write the study's figures (None: the storage's only study) into the folder `out`
    (default studies/<study>-report): one self-contained HTML page and PNGs; returns their
    paths, and says on stderr when the study has no complete trial yet. Raises ReportError,
    ConfigError, StorageError."""
    from search.config.paths import study_file
    from search.evaluate.report import no_complete_trial, write_report

    _check_path("out", out)
    study = load_study(study_name=study_name, storage=storage)
    folder = Path(out if out is not None else study_file(study.study_name, "report"))
    written = write_report(study, folder)
    missing = no_complete_trial(study)
    if missing:
        say(f"note: {missing}")
    return written
