"""One run of a study in this process: the study's data loaded and checked, its storage and
study opened once, its trials run by this process or by spawned workers, what is said on the
way."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from data import ConfigError

SEED_MAX = 2**32 - 1  # what the samplers (NumPy's legacy seeding) take


def check_seed(seed: Any, where: str, workers: int) -> None:
    """The study's seed (flag or config) is one every worker's sampler takes: worker k of
    --workers N seeds its sampler with seed + k, which must stay <= SEED_MAX."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError([f"{where}: expected a seed from 0 to {SEED_MAX}, got {seed!r}"])
    if seed + workers - 1 > SEED_MAX:
        raise ConfigError(
            [
                f"{where} {seed} with --workers {workers}: worker k seeds its sampler "
                f"with {seed} + k; expected a seed from 0 to {SEED_MAX - workers + 1}"
            ]
        )


def auto_workers(device: str, cfg: Any, data: Any) -> int:
    """--workers auto on this device (see search.study.autoworkers); 1 with a warning when the
    measurement cannot run."""
    from search.study.autoworkers import choose, middle_shape

    kind = "cuda" if device.startswith("cuda") else "cpu"
    if device.startswith("cuda:"):
        print(
            f"optuna-run: --workers auto with --device {device}: every worker on that GPU",
            file=sys.stderr,
        )
    try:
        return choose(
            kind,
            middle_shape(
                cfg.space,
                data.n_features,
                members=cfg.search.seeds * data.n_folds,
                precision=cfg.budget.precision,
            ),
            log=lambda line: print(f"optuna-run: {line}", file=sys.stderr, flush=True),
            single_gpu=device if device.startswith("cuda:") else None,
        )
    except Exception as e:  # a measurement that failed must not stop the study
        print(
            f"optuna-run: warning: --workers auto could not measure ({type(e).__name__}: {e}); "
            "running 1 worker",
            file=sys.stderr,
        )
        return 1


def tempfile_root() -> str:
    import tempfile

    shm = Path("/dev/shm")
    return str(shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir()))
