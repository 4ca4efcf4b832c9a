"""The study's sampler and pruner, built from its config: TPE or random; Hyperband (with each
trial's bracket computed once, on the fast path), successive halving, median or none."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from search.config.schema import RunConfig
from search.storage import _optuna


def make_sampler(cfg: RunConfig, worker: int = 0) -> optuna.samplers.BaseSampler:
    s = cfg.search
    seed = None if s.seed is None else s.seed + worker
    samplers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    return samplers[s.sampler]()


def _hyperband(**kwargs: Any) -> optuna.pruners.BasePruner:
    """Hyperband; on the fast path with each trial's bracket computed once
    (search/storage/_optuna/hyperband.py), else Optuna's own."""
    fast = _optuna.fast("hyperband")
    if fast is None:
        return optuna.pruners.HyperbandPruner(**kwargs)
    pruner: optuna.pruners.BasePruner = fast.HyperbandPruner(**kwargs)
    return pruner


def make_pruner(cfg: RunConfig) -> optuna.pruners.BasePruner:
    # The resource is the epoch; its maximum is set from the epochs range, never "auto".
    max_epochs = int(cfg.space.max("epochs"))
    pruners: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
        "hyperband": lambda: _hyperband(
            min_resource=1, max_resource=max(max_epochs, 2), reduction_factor=3
        ),
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=3
        ),
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    return pruners[cfg.search.pruner]()
