"""Stored studies and devices for the API's verbs: a study of a storage opened by name (an
error naming the studies that are there), a SQLite file that must exist to be read, and the
device a name means on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data import ConfigError

DEVICES_HELP = "auto (CUDA when available), cpu, cuda or cuda:N"


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


def load_existing(storage_flag: str | None, name: str) -> Any:
    """The named study of the storage (flag, $OPTUNA_STORAGE, default file), or an error
    naming the studies that are there. Raises StorageError / ConfigError."""
    import optuna

    from search.storage.rdb import check_url, describe, make_storage, resolve_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_url(storage_flag)
    check_url(url)
    missing = missing_sqlite(url)
    if missing:
        raise ConfigError([missing])
    storage = make_storage(url, heartbeat_interval=None)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name not in names:
        raise ConfigError(
            [f"--study-name: no study {name!r} in {describe(url)}; studies there: {names}"]
        )
    return optuna.load_study(study_name=name, storage=storage)
