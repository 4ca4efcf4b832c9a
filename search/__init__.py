"""The search service: CLI, config, search space, storage, objective, runner, export."""

from __future__ import annotations

from search.config.schema import RunConfig, build_config
from search.config.space import SearchSpace, TrialParams

__all__ = ["RunConfig", "SearchSpace", "TrialParams", "build_config"]
