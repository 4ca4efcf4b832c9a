"""The study's sampler and pruner, built from its config: TPE or random; Hyperband (with each
trial's bracket computed once, on the fast path), successive halving, median or none."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import optuna

from data import Prepared
from search.config.schema import RunConfig
from search.storage import _optuna


def make_sampler(cfg: RunConfig, worker: int = 0, started: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler for worker `worker` of a run. With [search] seed, a run on a study
    of `started` trials already started (a resumed study) draws from a seed of its own: the
    seed alone would draw again the configurations the first run drew."""
    s = cfg.search
    seed = None if s.seed is None else s.seed + worker
    if seed is not None and started > 0:
        seed = int(np.random.SeedSequence([seed, started]).generate_state(1)[0])
    samplers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    return samplers[s.sampler]()


def started_trials(study: optuna.Study) -> int:
    """Trials of `study` that have started (running or finished; not those waiting)."""
    states = (
        optuna.trial.TrialState.RUNNING,
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.FAIL,
    )
    return len(study.get_trials(deepcopy=False, states=states))


def resume_sampler(
    study: optuna.Study, cfg: RunConfig, worker: int = 0, started: int | None = None
) -> None:
    """Give a seeded run on a study that has started trials a sampler of its own seed;
    `started`: the trials the run found started when it opened the study (None: count
    them now), the same for each of its workers."""
    if cfg.search.seed is not None:
        started = started_trials(study) if started is None else started
        if started:
            study.sampler = make_sampler(cfg, worker, started)


def _hyperband(**kwargs: Any) -> optuna.pruners.BasePruner:
    """Hyperband; on the fast path with each trial's bracket computed once
    (search/storage/_optuna/hyperband.py), else Optuna's own."""
    fast = _optuna.fast("hyperband")
    if fast is None:
        return optuna.pruners.HyperbandPruner(**kwargs)
    pruner: optuna.pruners.BasePruner = fast.HyperbandPruner(**kwargs)
    return pruner


def epoch_windows(cfg: RunConfig, data: Prepared, time_steps: int | None = None) -> int:
    """The training windows per network a trial of `time_steps` (default: the study's
    shortest, the most windows) trains in an epoch: its count on the smallest fold, capped
    by [budget] max_windows_per_epoch."""
    steps = int(cfg.space.min("time_steps")) if time_steps is None else time_steps
    n = min(data.count("train", steps, f) for f in range(data.n_folds))
    cap = cfg.budget.max_windows_per_epoch
    return max(1, min(n, cap) if cap > 0 else n)


def epoch_range(cfg: RunConfig, data: Prepared) -> tuple[int, int]:
    """The fewest and the most training windows an epoch of the study trains (its longest
    and its shortest time_steps): what make_pruner sizes its resource with."""
    return epoch_windows(cfg, data, int(cfg.space.max("time_steps"))), epoch_windows(cfg, data)


def make_pruner(cfg: RunConfig, epochs: tuple[int, int] | None = None) -> optuna.pruners.BasePruner:
    """The study's pruner. Its resource is the epoch (its maximum set from the epochs range,
    never "auto"); with [budget] report_every it is the windows trained per network:
    `epochs` = (fewest, most) windows an epoch trains (epoch_range) size it from
    `report_every`, or the fewest if smaller, so that every trial reaches the first rung
    within its first epoch, to the epochs' maximum times the most."""
    max_epochs = int(cfg.space.max("epochs"))
    unit, top = 1, max(max_epochs, 2)
    if cfg.budget.report_every > 0:
        if epochs is None:
            raise ValueError(
                "[budget] report_every: the pruner's resource needs the epoch's windows"
            )
        fewest, most = epochs
        unit = min(cfg.budget.report_every, fewest)
        top = max(max_epochs * most, 2 * unit)
    pruners: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
        "hyperband": lambda: _hyperband(min_resource=unit, max_resource=top, reduction_factor=3),
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=unit, reduction_factor=3
        ),
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2 * unit),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    return pruners[cfg.search.pruner]()


def study_pruner(cfg: RunConfig, data: Prepared) -> optuna.pruners.BasePruner:
    """The pruner of a study run on `data`: make_pruner sized by its epochs (epoch_range)."""
    return make_pruner(cfg, epoch_range(cfg, data))
