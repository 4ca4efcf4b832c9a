"""The search service: CLI, config, search space, storage, objective, runner, export."""

from __future__ import annotations

from search.config import RunConfig, build_config
from search.space import SearchSpace, TrialParams

__all__ = ["RunConfig", "SearchSpace", "TrialParams", "build_config"]
