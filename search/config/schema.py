"""The run configuration: frozen dataclasses, one per TOML table, each validated on
construction (its fields by their real types, then its values), every problem at once.

`RunConfig.to_dict()` is what a study stores (its `config` user attr); `RunConfig.from_dict`
reads it back. `search.config.load` builds a RunConfig from a study TOML and flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from data import ConfigError, DataConfig
from data.fields import Checked, did_you_mean, unknown_keys
from models.metrics import CLASSIFICATION_ONLY, OBJECTIVES, REGRESSION_ONLY
from models.train import LR_SCHEDULES
from models.train import PRECISIONS as AUTOCAST
from search.config.space import SearchSpace

SAMPLERS = ("tpe", "random")
PRUNERS = ("hyperband", "successive_halving", "median", "none")
PRECISIONS = tuple(AUTOCAST)


def _unknown_name(what: str, name: str, valid: tuple[str, ...] | list[str]) -> str:
    return (
        f"unknown {what} {name!r}{did_you_mean(name, list(valid))}; valid names are {list(valid)}"
    )


@dataclass(frozen=True)
class StudyConfig(Checked):
    section: ClassVar[str] = "study"

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

    def problems(self) -> list[str]:
        p: list[str] = []
        if not self.name.strip():
            p.append("--study-name / [study] name: must not be empty")
        objs = self.objectives
        where = "--objective / [study] objective"
        p += [
            f"{where}: {_unknown_name('objective', o, list(OBJECTIVES))}"
            for o in objs
            if o not in OBJECTIVES
        ]
        if not objs:
            p.append(f"{where}: must name at least one objective")
        if len(set(objs)) != len(objs):
            p.append(f"{where}: {self.objective!r} repeats a name")
        return p


@dataclass(frozen=True)
class BudgetConfig(Checked):
    section: ClassVar[str] = "budget"

    max_windows_per_epoch: int = 0
    """Training windows sampled per epoch (0 = all); validation always uses all its windows."""
    eval_batch_size: int = 8192
    """Windows per forward pass when validating."""
    val_dates: int = 0
    """Validation dates scored at each report to the pruner (after each epoch, and every
    `report_every` windows) and for the choice of the best epoch: a fixed, evenly spaced
    subset of the validation segment (0 = every date). The trial's value is always scored
    on every validation date, at its best epoch."""
    val_windows: int = 0
    """At most this many windows of those dates per report: a fixed random subset (fewer
    securities per date, the same dates) so a wide panel's report costs a small share of
    the training between reports (0 = all)."""
    patience: int = 0
    """Early stopping: end a trial after this many epochs without improvement (0 = off)."""
    report_every: int = 0
    """Report to the pruner every this many training windows (per network), inside epochs
    too, on the per-epoch validation subset: the pruner's resource is then the windows
    trained, and Hyperband's first cut falls after `report_every` windows instead of a
    whole epoch (0 = one report per epoch, the resource is the epoch)."""
    precision: str = "fp32"
    """Training arithmetic: "fp32" (float32; on a GPU cuDNN may use TF32 tensor cores, as
    torch allows by default), "fp16" (CUDA only: forward passes under autocast in float16,
    cuDNN's LSTM included, with a gradient scaler) or "bf16" (forward passes under autocast
    in bfloat16, on a GPU or a CPU (oneDNN's LSTM); no scaler). Weights, the loss and
    validation stay float32."""

    def problems(self) -> list[str]:
        p: list[str] = []
        for k in ("max_windows_per_epoch", "patience", "val_dates", "val_windows", "report_every"):
            if getattr(self, k) < 0:
                p.append(f"[budget] {k}: must be >= 0, got {getattr(self, k)}")
        if self.eval_batch_size < 1:
            p.append(f"[budget] eval_batch_size: must be >= 1, got {self.eval_batch_size}")
        if self.precision not in PRECISIONS:
            p.append(
                f"[budget] precision: expected one of {', '.join(PRECISIONS)}, "
                f"got {self.precision!r}"
            )
        return p


@dataclass(frozen=True)
class SearchConfig(Checked):
    section: ClassVar[str] = "search"

    sampler: str = "tpe"
    pruner: str = "hyperband"
    seed: int | None = None
    n_startup_trials: int = 10
    """Random trials before TPE models the space."""
    seeds: int = 1
    """Models per trial with seeds seed, seed+1, ...: the value is their mean, the spread is
    stored beside it. With folds, every fold trains `seeds` models."""
    enqueue: tuple[dict[str, Any], ...] = ()
    """Configurations to try first, each a table of params (`[[search.enqueue]]`): queued
    when the study is created, before the sampler's own trials. A param left out is sampled;
    a param the space fixes keeps its fixed value; a searched param's value must lie in its
    range or choices."""

    def problems(self) -> list[str]:
        p: list[str] = []
        if self.sampler not in SAMPLERS:
            p.append(
                f"--sampler / [search] sampler: {_unknown_name('sampler', self.sampler, SAMPLERS)}"
            )
        if self.pruner not in PRUNERS:
            p.append(f"--pruner / [search] pruner: {_unknown_name('pruner', self.pruner, PRUNERS)}")
        if self.n_startup_trials < 0:
            p.append("[search] n_startup_trials: must be >= 0")
        if self.seeds < 1:
            p.append(f"--seeds / [search] seeds: must be >= 1, got {self.seeds}")
        return p


@dataclass(frozen=True)
class StorageConfig(Checked):
    section: ClassVar[str] = "storage"

    heartbeat_interval: int = 20
    """Seconds between a running trial's heartbeats (RDB storages)."""
    grace_period: int = 60
    """Seconds without a heartbeat after which a RUNNING trial counts as dead and is failed."""
    max_retry: int = 2
    """A trial failed by a dead worker is re-run with the same params this many times."""

    def problems(self) -> list[str]:
        p: list[str] = []
        if self.heartbeat_interval < 1:
            p.append("[storage] heartbeat_interval: must be >= 1 second")
        if self.grace_period <= self.heartbeat_interval:
            p.append(
                "[storage] grace_period: must be longer than heartbeat_interval, got "
                f"{self.grace_period} <= {self.heartbeat_interval}"
            )
        if self.max_retry < 0:
            p.append("[storage] max_retry: must be >= 0")
        return p


@dataclass(frozen=True)
class FinalConfig(Checked):
    """The final fit of the selected configuration(s) (`train`; `train --exact` reproduces
    the trial at the search's budget instead): search cheap, fit the winner in full."""

    section: ClassVar[str] = "final"

    max_windows_per_epoch: int = 0
    """Training windows per epoch (0 = every training window each epoch)."""
    epochs: int = 12
    """At most this many epochs (the cosine schedule's length); the best epoch on validation
    is kept."""
    patience: int = 0
    """Stop after this many epochs without a better validation score (0 = off: a cosine
    schedule's early epochs, at a high rate, are noisy, and its last ones the best)."""
    seeds: int = 3
    """Networks per configuration (the trial's seed, seed + 1, ...), averaged."""
    val_dates: int = 0
    """Validation dates scored after each epoch to choose the best one (0 = every date)."""
    val_windows: int = 0
    """At most this many windows of those dates per epoch (0 = all)."""
    lr_schedule: str = "cosine"
    """The learning rate over the fit: "cosine" (from the trial's lr down to 5% of it by the
    last planned epoch) or "constant" (the trial's lr throughout, as in the search)."""

    def problems(self) -> list[str]:
        p: list[str] = []
        for k in ("max_windows_per_epoch", "patience", "val_dates", "val_windows"):
            if getattr(self, k) < 0:
                p.append(f"[final] {k}: must be >= 0, got {getattr(self, k)}")
        if self.lr_schedule not in LR_SCHEDULES:
            p.append(
                f"[final] lr_schedule: expected one of {', '.join(LR_SCHEDULES)}, "
                f"got {self.lr_schedule!r}"
            )
        for k in ("epochs", "seeds"):
            if getattr(self, k) < 1:
                p.append(f"[final] {k}: must be >= 1, got {getattr(self, k)}")
        return p


SECTIONS: dict[str, type[Checked]] = {
    "study": StudyConfig,
    "data": DataConfig,
    "budget": BudgetConfig,
    "search": SearchConfig,
    "storage": StorageConfig,
    "final": FinalConfig,
}


def objective_task_problems(study: StudyConfig, task: str) -> list[str]:
    """An objective that does not apply to the data's task (a regression's rank IC on
    classes, a classifier's accuracy on returns)."""
    wrong = CLASSIFICATION_ONLY if task == "regression" else REGRESSION_ONLY
    return [
        f"--objective / [study] objective: {o!r} does not apply to [data] task = {task!r}"
        for o in study.objectives
        if o in wrong
    ]


def enqueue_problems(search: SearchConfig, space: SearchSpace) -> list[str]:
    """The [search] enqueue entries that are not trials of the space."""
    return [
        p
        for i, entry in enumerate(search.enqueue)
        for p in space.enqueue_problems(entry, f"[search] enqueue[{i}]")
    ]


def ranked_features(data: DataConfig) -> bool:
    """Whether the features reach the network in [-0.5, 0.5] (per-date ranks, and with
    cs_rank+level training-date quantiles), the range the piecewise-linear pieces
    (`[space] input_bins`) cover."""
    return data.normalize in ("cs_rank", "cs_rank+level")


def input_bins_problems(space: SearchSpace, data: DataConfig) -> list[str]:
    """The pieces cover a per-date rank: another scaling's values would mostly saturate
    them."""
    if int(space.max("input_bins")) > 0 and not ranked_features(data):
        return [
            f"[space] input_bins: pieces of a feature need its per-date rank in [-0.5, 0.5] "
            f'([data] normalize = "cs_rank" or "cs_rank+level"), got normalize = '
            f'{data.normalize!r}; set input_bins = 0 or normalize = "cs_rank"'
        ]
    return []


@dataclass(frozen=True)
class RunConfig(Checked):
    study: StudyConfig
    data: DataConfig
    budget: BudgetConfig
    search: SearchConfig
    storage: StorageConfig
    space: SearchSpace
    final: FinalConfig = field(default_factory=FinalConfig)
    """The final fit's budget ([final]); a study stored before it existed reads the defaults."""
    config_path: str = ""
    """The study TOML the config was read from."""
    cpu_limits: bool = False
    """Whether the [cpu] limits were applied (training on a CPU device)."""
    notes: tuple[str, ...] = field(default=(), compare=False)
    """What was filled in for the user (inherited data, a derived study name): said at start."""

    def problems(self) -> list[str]:
        return (
            objective_task_problems(self.study, self.data.task)
            + input_bins_problems(self.space, self.data)
            + enqueue_problems(self.search, self.space)
        )

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, JSON-ready (no storage URL, so no password, is in it)."""
        return {
            "study": asdict(self.study),
            "data": {**asdict(self.data), "features": list(self.data.features)},
            "budget": asdict(self.budget),
            "search": asdict(self.search),
            "storage": asdict(self.storage),
            "final": asdict(self.final),
            "space": self.space.as_dict(),
            "config_path": self.config_path,
            "cpu_limits": self.cpu_limits,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str | None = None) -> RunConfig:
        """The inverse of `to_dict` (a study's stored `config`): a table left out takes its
        defaults, the space excepted; every problem at once, each prefixed by `where`."""
        where = where or "config"
        if not isinstance(d, Mapping):
            raise ConfigError([f"{where}: expected a table, got {d!r}"])
        problems = unknown_keys(where, d, [*SECTIONS, "space", "config_path", "cpu_limits"])
        kw: dict[str, Any] = {}
        for name, section in SECTIONS.items():
            try:
                read = DataConfig.stored if section is DataConfig else section.from_dict
                kw[name] = read(d.get(name, {}))
            except ConfigError as e:
                problems += e.problems
        try:
            kw["space"] = SearchSpace.from_dict(d.get("space"))
        except ConfigError as e:
            problems += e.problems
        try:
            if not problems:
                return cls(
                    **kw,
                    config_path=d.get("config_path", ""),
                    cpu_limits=d.get("cpu_limits", False),
                )
        except ConfigError as e:
            problems += e.problems
        raise ConfigError([p if p.startswith(where) else f"{where}: {p}" for p in problems])


_MOVED = ("build_config", "load_config", "read_toml", "default_config_path", "inherit_data")


def __getattr__(name: str) -> Any:
    """The TOML reading lives in search.config.load; its names stay importable from here."""
    if name in _MOVED or name.startswith("DEFAULT_"):
        from search.config import load

        return getattr(load, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
