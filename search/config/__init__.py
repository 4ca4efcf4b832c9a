"""The run configuration: its schema (frozen, self-validating dataclasses), its loading
(study TOML < overrides < flags) and the search space.

Every name is imported on first use: `search.config.paths` (what the command line's flag
checks need) loads without the schema's models and torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from data.lazy import lazy_dir, lazy_names

if TYPE_CHECKING:
    from search.config.load import build_config, load_config
    from search.config.schema import (
        BudgetConfig,
        RunConfig,
        SearchConfig,
        StorageConfig,
        StudyConfig,
    )
    from search.config.space import SearchSpace, TrialParams

# public name -> the module that holds it
_LAZY = {
    "build_config": "search.config.load",
    "load_config": "search.config.load",
    "BudgetConfig": "search.config.schema",
    "RunConfig": "search.config.schema",
    "SearchConfig": "search.config.schema",
    "StorageConfig": "search.config.schema",
    "StudyConfig": "search.config.schema",
    "SearchSpace": "search.config.space",
    "TrialParams": "search.config.space",
}

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


if not TYPE_CHECKING:  # mypy reads the imports above; an unknown name stays an error
    __getattr__ = lazy_names(__name__, _LAZY, globals())
    __dir__ = lazy_dir(_LAZY, globals())
