"""The run configuration: its schema (frozen, self-validating dataclasses), its loading
(study TOML < overrides < flags) and the search space."""

from search.config.load import build_config, load_config
from search.config.schema import (
    BudgetConfig,
    RunConfig,
    SearchConfig,
    StorageConfig,
    StudyConfig,
)
from search.config.space import SearchSpace, TrialParams

__all__ = [
    "BudgetConfig",
    "RunConfig",
    "SearchConfig",
    "SearchSpace",
    "StorageConfig",
    "StudyConfig",
    "TrialParams",
    "build_config",
    "load_config",
]
