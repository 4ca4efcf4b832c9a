"""The study's sampler and pruner, built from its config: TPE or random; Hyperband (with each
trial's bracket computed once), successive halving, median or none."""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

import optuna

from search.config.schema import RunConfig


def make_sampler(cfg: RunConfig, worker: int = 0) -> optuna.samplers.BaseSampler:
    s = cfg.search
    seed = None if s.seed is None else s.seed + worker
    samplers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    return samplers[s.sampler]()


class HyperbandPruner(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband, with each trial's bracket computed once and the bracket's trials
    listed in one plain pass.

    The bracket is a hash of the study name and the trial number; Optuna recomputes it for
    every trial of the study at every `should_prune` (to list the trials of the bracket),
    through a study view it builds as a new class each time, whose every attribute access
    is checked: costs that grow with the study. The decisions are the same
    (tests/search_tests/test_pruning_replay.py replays recorded trials through both).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._bracket_of: dict[str, dict[int, int]] = {}  # study name -> number -> bracket

    def _get_bracket_id(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
        if not self._pruners:  # not sized yet: Optuna answers 0 for now
            return super()._get_bracket_id(study, trial)
        known = self._bracket_of.setdefault(study.study_name, {})
        bracket = known.get(trial.number)
        if bracket is None:
            bracket = known[trial.number] = super()._get_bracket_id(study, trial)
        return bracket

    def _create_bracket_study(self, study: optuna.Study, bracket_id: int) -> optuna.Study:
        return _BracketView(study, self, bracket_id)


class _BracketView(optuna.study.Study):
    """The trials of one Hyperband bracket, as the bracket's successive-halving pruner
    reads them (`get_trials`, `direction`, `_storage`); made without Study.__init__'s
    storage lookups: it shares the study's."""

    def __init__(self, study: optuna.Study, pruner: HyperbandPruner, bracket_id: int) -> None:
        self.__dict__.update(study.__dict__)
        self.pruner = pruner
        self._bracket_id = bracket_id
        self._study = study

    def get_trials(
        self,
        deepcopy: bool = True,
        states: Container[optuna.trial.TrialState] | None = None,
    ) -> list[optuna.trial.FrozenTrial]:
        trials = self._storage.get_all_trials(self._study_id, deepcopy=deepcopy, states=states)
        pruner, study, bracket_id = self.pruner, self._study, self._bracket_id
        assert isinstance(pruner, HyperbandPruner)
        return [t for t in trials if pruner._get_bracket_id(study, t) == bracket_id]

    def stop(self) -> None:
        self._study.stop()


def make_pruner(cfg: RunConfig) -> optuna.pruners.BasePruner:
    # The resource is the epoch; its maximum is set from the epochs range, never "auto".
    max_epochs = int(cfg.space.max("epochs"))
    pruners: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
        "hyperband": lambda: HyperbandPruner(
            min_resource=1, max_resource=max(max_epochs, 2), reduction_factor=3
        ),
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=3
        ),
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    return pruners[cfg.search.pruner]()
