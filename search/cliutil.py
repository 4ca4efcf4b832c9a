"""Helpers shared by the verbs of `optuna-run`: the one-line error and the device flag."""

from __future__ import annotations

import contextlib
import faulthandler
import signal
import sys
from typing import Any

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

    from search.storage import describe, make_storage, resolve_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_url(storage_flag)
    storage = make_storage(url, heartbeat_interval=None)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name not in names:
        raise ConfigError(
            [f"--study-name: no study {name!r} in {describe(url)}; studies there: {names}"]
        )
    return optuna.load_study(study_name=name, storage=storage)
