"""Helpers shared by the verbs of `optuna-run`: the one-line error (also for argparse's
errors), output paths checked before anything is written, and the device flag."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

from data import ConfigError

DEVICES_HELP = "auto (CUDA when available), cpu, cuda or cuda:N"


def stacks_on_sigusr1() -> None:
    """`kill -USR1 PID` writes every thread's stack to stderr (where a hung process waits);
    nothing when stderr is no file (e.g. captured in-process) or the platform has no
    SIGUSR1."""
    if not hasattr(signal, "SIGUSR1"):
        return
    # io.UnsupportedOperation (an OSError and a ValueError): stderr has no fileno
    with contextlib.suppress(AttributeError, OSError, ValueError):
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)


def fail(msg: str, code: int = 2) -> int:
    print(f"optuna-run: error: {msg}", file=sys.stderr)
    return code


class Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every verb: `optuna-run: error: argument --flag:
    what was expected, got what (see PROG --help)`, exit status 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(part.strip() for part in message.splitlines() if part.strip())
        self.exit(2, f"optuna-run: error: {line} (see {self.prog} --help)\n")


def out_problem(value: str, folder: bool = False) -> str | None:
    """Why `value` cannot be written as a file (or, with `folder`, as a folder of files):
    a folder where a file is meant or the reverse, a file on the way, no permission; None
    when it can. Missing parent folders are fine: they are created when it is written."""
    if not value.strip():
        return f"expected a {'folder' if folder else 'file'} name, got {value!r}"
    path = Path(value)
    if path.is_dir() and not folder:
        return f"{value} is a folder; expected a file name"
    if path.exists() and not path.is_dir() and folder:
        return f"{value} is a file; expected a folder"
    where = path if folder else path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        return f"cannot write {value}: {where} is not a folder"
    if not os.access(where, os.W_OK | os.X_OK):
        return f"cannot write {value}: no permission to write in {where}"
    return None


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
