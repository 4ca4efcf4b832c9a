"""The run configuration's dataclasses, one per TOML table; `search.config.load` builds
them from a study TOML and flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from data import DataConfig
from models.metrics import OBJECTIVES
from search.config.space import SearchSpace

SAMPLERS = ("tpe", "random")
PRUNERS = ("hyperband", "successive_halving", "median", "none")


@dataclass(frozen=True)
class StudyConfig:
    name: str = "sp500-lstm"
    """Study name in the storage (`[study] name`, `--study-name`)."""
    objective: str = "rank_ic"
    """What a trial's value is (`--objective`): a validation metric (val_loss, rank_ic, icir,
    sharpe, ...; see models.metrics.OBJECTIVES), its direction implied. Several, comma-separated
    (`rank_ic,val_loss`), make a multi-objective study: no pruning, a Pareto front."""

    @property
    def objectives(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.objective.split(",") if o.strip())

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric keys behind the objectives."""
        return tuple(OBJECTIVES[o][0] for o in self.objectives)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o][1] for o in self.objectives]

    @property
    def direction(self) -> str:
        """The first objective's direction (the one that picks the best epoch)."""
        return self.directions[0]

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1


PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class BudgetConfig:
    max_windows_per_epoch: int = 0
    """Training windows sampled per epoch (0 = all); validation always uses all its windows."""
    eval_batch_size: int = 8192
    """Windows per forward pass when validating."""
    val_dates: int = 0
    """Validation dates scored after each epoch for the pruner and the choice of the best
    epoch: a fixed, evenly spaced subset of the validation segment (0 = every date). The
    trial's value is always scored on every validation date, at its best epoch."""
    val_windows: int = 0
    """At most this many windows of those dates per epoch: a fixed random subset (fewer
    securities per date, the same dates) so a wide panel's per-epoch report costs a small
    share of the epoch (0 = all)."""
    patience: int = 0
    """Early stopping: end a trial after this many epochs without improvement (0 = off)."""
    precision: str = "fp32"
    """Training arithmetic: "fp32" (float32; on a GPU cuDNN may use TF32 tensor cores, as
    torch allows by default) or "fp16" (CUDA only: forward passes under autocast in
    float16, cuDNN's LSTM included, with a gradient scaler; validation stays float32)."""


@dataclass(frozen=True)
class SearchConfig:
    sampler: str = "tpe"
    pruner: str = "hyperband"
    seed: int | None = None
    n_startup_trials: int = 10
    """Random trials before TPE models the space."""
    seeds: int = 1
    """Models per trial with seeds seed, seed+1, ...: the value is their mean, the spread is
    stored beside it. With folds, every fold trains `seeds` models."""


@dataclass(frozen=True)
class StorageConfig:
    heartbeat_interval: int = 20
    """Seconds between a running trial's heartbeats (RDB storages)."""
    grace_period: int = 60
    """Seconds without a heartbeat after which a RUNNING trial counts as dead and is failed."""
    max_retry: int = 2
    """A trial failed by a dead worker is re-run with the same params this many times."""


@dataclass(frozen=True)
class RunConfig:
    study: StudyConfig
    data: DataConfig
    budget: BudgetConfig
    search: SearchConfig
    storage: StorageConfig
    space: SearchSpace
    config_path: str
    cpu_limits: bool
    notes: tuple[str, ...] = ()
    """What was filled in for the user (inherited data, a derived study name): said at start."""

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, JSON-ready (no storage URL, so no password, is in it)."""
        return {
            "study": asdict(self.study),
            "data": {**asdict(self.data), "features": list(self.data.features)},
            "budget": asdict(self.budget),
            "search": asdict(self.search),
            "storage": asdict(self.storage),
            "space": self.space.as_dict(),
            "config_path": self.config_path,
            "cpu_limits": self.cpu_limits,
        }


SECTIONS: dict[str, Any] = {
    "study": StudyConfig,
    "data": DataConfig,
    "budget": BudgetConfig,
    "search": SearchConfig,
    "storage": StorageConfig,
}


_MOVED = (
    "DEFAULT_CONFIG",
    "DEFAULT_CPU_BUDGET",
    "DEFAULT_CPU_SPACE",
    "DEFAULT_SPACE",
    "build_config",
    "default_config_path",
    "inherit_data",
    "read_toml",
)


def __getattr__(name: str) -> Any:
    """The TOML reading lives in search.config.load; its names stay importable from here."""
    if name in _MOVED:
        from search.config import load

        return getattr(load, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
