"""Optuna's Hyperband with each trial's bracket computed once: it overrides Hyperband's
private bracket methods and reads the study's private attributes, so it lives in this
package and is used only on the fast path (search/study/pruners.py takes Optuna's own
HyperbandPruner otherwise)."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import optuna


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
