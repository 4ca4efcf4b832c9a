"""The search space: the only module that calls `trial.suggest_*`.

Each param is a fixed value, an int/float range (optionally log or stepped) or a list of
choices. The space is written in the study TOML's [space] table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import optuna

from data import ConfigError
from data.fields import unknown_keys
from models import MODELS, OPTIMIZERS

# name -> (type, check, what the check means)
PARAMS: dict[str, tuple[type, Any, str]] = {
    "model": (str, lambda v: v in MODELS, f"one of {sorted(MODELS)}"),
    "time_steps": (int, lambda v: v >= 1, ">= 1"),
    "num_layers": (int, lambda v: v >= 1, ">= 1"),
    "hidden_dim": (int, lambda v: v >= 1, ">= 1"),
    "head_dim": (int, lambda v: v >= 0, ">= 0 (0 = linear head)"),
    "input_bins": (int, lambda v: v >= 0, ">= 0 (0 = the features as they are)"),
    "dropout": (float, lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "lr": (float, lambda v: v > 0, "> 0"),
    "weight_decay": (float, lambda v: v >= 0, ">= 0"),
    "batch_size": (int, lambda v: v >= 1, ">= 1"),
    "epochs": (int, lambda v: v >= 1, ">= 1"),
    "optimizer": (str, lambda v: v in OPTIMIZERS, f"one of {sorted(OPTIMIZERS)}"),
    "grad_clip": (float, lambda v: v > 0, "> 0"),
}
# Params a [space] table may leave out, and the value they then take: a space stored by a
# study from before the param existed reads as it ran.
OPTIONAL: dict[str, Any] = {"input_bins": 0}


def typed(name: str, v: Any) -> Any:
    """`v` as param `name` holds it: an integer where a float is expected becomes a float."""
    if PARAMS[name][0] is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def wrong_type(name: str, v: Any) -> bool:
    """Whether `v` (typed) is not of param `name`'s type (a bool is no number)."""
    return isinstance(v, bool) or not isinstance(v, PARAMS[name][0])


@dataclass(frozen=True)
class Param:
    name: str
    value: Any = None  # fixed value
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def fixed(self) -> bool:
        return self.low is None and self.choices is None

    def suggest(self, trial: optuna.Trial) -> Any:
        kind = PARAMS[self.name][0]
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.fixed:
            return self.value
        assert self.low is not None and self.high is not None
        if kind is int:
            return trial.suggest_int(
                name=self.name,
                low=int(self.low),
                high=int(self.high),
                log=self.log,
                step=int(self.step or 1),
            )
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def refuses(self, v: Any) -> str | None:
        """Why `v` is not a value this param can take in a trial (None: it can)."""
        v = typed(self.name, v)
        if wrong_type(self.name, v):
            return f"expected {PARAMS[self.name][0].__name__}, got {v!r}"
        if self.choices is not None:
            return None if v in self.choices else f"must be one of {list(self.choices)}, got {v!r}"
        if self.fixed:
            return None if v == self.value else f"is fixed to {self.value!r}, got {v!r}"
        assert self.low is not None and self.high is not None
        x = float(cast(float, v))  # a range is numeric (int or float)
        if not self.low <= x <= self.high:
            return f"must lie in the range [{self.low}, {self.high}], got {v!r}"
        if self.step is not None:
            k = (x - self.low) / self.step
            if abs(k - round(k)) > 1e-9:
                return f"must be {self.low} plus a multiple of the step {self.step}, got {v!r}"
        return None

    def values_max(self) -> Any:
        if self.choices is not None:
            return max(self.choices)
        return self.value if self.fixed else self.high

    def values_min(self) -> Any:
        if self.choices is not None:
            return min(self.choices)
        return self.value if self.fixed else self.low

    def as_dict(self) -> Any:
        if self.fixed:
            return self.value
        if self.choices is not None:
            return {"choices": list(self.choices)}
        d: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            d["log"] = True
        if self.step is not None:
            d["step"] = self.step
        return d


def parse_param(name: str, raw: Any, where: str, problems: list[str]) -> Param | None:
    """One [space] entry -> Param, appending any problem (naming `where`) to `problems`."""
    kind, check, means = PARAMS[name]
    key = f"{where}.{name}"

    def ok(v: Any) -> bool:
        v = typed(name, v)
        if wrong_type(name, v):
            problems.append(f"{key}: expected {kind.__name__} values, got {v!r}")
            return False
        if not check(v):
            problems.append(f"{key}: must be {means}, got {v!r}")
            return False
        return True

    if not isinstance(raw, dict):
        return Param(name, value=typed(name, raw)) if ok(raw) else None
    unknown = set(raw) - {"low", "high", "log", "step", "choices"}
    if unknown:
        problems.append(
            f"{key}: unknown key(s) {sorted(unknown)}; a range is {{low, high, log, step}}, "
            "choices are {choices = [...]}"
        )
        return None
    if "choices" in raw:
        if set(raw) != {"choices"}:
            problems.append(f"{key}: `choices` cannot be combined with low/high/log/step")
            return None
        ch = raw["choices"]
        if not isinstance(ch, list) or not ch:
            problems.append(f"{key}.choices: expected a non-empty list, got {ch!r}")
            return None
        if not all(ok(c) for c in ch):
            return None
        return Param(name, choices=tuple(typed(name, c) for c in ch))
    if "low" not in raw or "high" not in raw:
        problems.append(f"{key}: a range needs both `low` and `high`, got {raw!r}")
        return None
    if kind is str:
        problems.append(f"{key}: takes a value or {{choices = [...]}}, not a range")
        return None
    low, high = raw["low"], raw["high"]
    if not (ok(low) and ok(high)):
        return None
    log, step = raw.get("log", False), raw.get("step")
    if not isinstance(log, bool):
        problems.append(f"{key}.log: expected true or false, got {log!r}")
        return None
    if low > high:
        problems.append(f"{key}: `low <= high` must hold, got low={low!r}, high={high!r}")
        return None
    if log and low <= 0:
        problems.append(f"{key}: a log range needs low > 0, got low={low!r}")
        return None
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, int | float) or step <= 0
    ):
        problems.append(f"{key}.step: expected a number > 0, got {step!r}")
        return None
    if step is not None and log and step != 1:
        problems.append(
            f"{key}: step = {step!r} and log = true cannot go together (a log range has no "
            "step); drop one"
        )
        return None
    if kind is int and step is not None and not isinstance(step, int):
        problems.append(f"{key}.step: expected an integer step, got {step!r}")
        return None
    return Param(
        name,
        low=typed(name, low),
        high=typed(name, high),
        log=log,
        step=typed(name, step) if step is not None else None,
    )


@dataclass(frozen=True)
class TrialParams:
    """One trial's hyperparameters, typed."""

    model: str
    time_steps: int
    num_layers: int
    hidden_dim: int
    head_dim: int
    dropout: float
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    optimizer: str
    grad_clip: float
    input_bins: int = 0  # each ranked feature as this many piecewise-linear pieces (0: raw)


def parse_space(
    raw: Mapping[str, Any], where: Callable[[str], str], problems: list[str]
) -> SearchSpace | None:
    """Every param of a [space] table -> SearchSpace (None when a problem was appended);
    `where(name)` names the table a param was read from."""
    params: dict[str, Param] = {}
    n = len(problems)
    for name in PARAMS:
        if name not in raw and name in OPTIONAL:
            params[name] = Param(name, value=OPTIONAL[name])
            continue
        if name not in raw:
            problems.append(f"{where(name)}.{name}: missing (a value, a range or choices)")
            continue
        p = parse_param(name, raw[name], where(name), problems)
        if p is not None:
            params[name] = p
    return SearchSpace(params) if len(problems) == n else None


@dataclass(frozen=True)
class SearchSpace:
    params: dict[str, Param]

    def __post_init__(self) -> None:
        problems = unknown_keys("[space]", self.params, list(PARAMS))
        for name in PARAMS:
            p = self.params.get(name)
            if not isinstance(p, Param) or p.name != name:
                problems.append(f"[space].{name}: expected a Param named {name!r}, got {p!r}")
            else:  # a Param made directly is held to what the TOML may write
                parse_param(name, p.as_dict(), "[space]", problems)
        if problems:
            raise ConfigError(problems)

    @classmethod
    def from_dict(cls, d: Any, where: str = "[space]") -> SearchSpace:
        """The inverse of `as_dict` (a stored space; a [space] table naming every param)."""
        if not isinstance(d, Mapping):
            raise ConfigError([f"{where}: expected a table, got {d!r}"])
        problems = unknown_keys(where, d, list(PARAMS))
        space = parse_space(d, lambda _: where, problems)
        if space is None or problems:
            raise ConfigError(problems)
        return space

    def suggest(self, trial: optuna.Trial) -> TrialParams:
        return TrialParams(**{name: self.params[name].suggest(trial) for name in PARAMS})

    def enqueue_problems(self, entry: Any, where: str) -> list[str]:
        """Why a [search] enqueue entry cannot be a trial of this space: a key that names no
        param, or a searched param's value outside its range or choices (a param the space
        fixes takes its fixed value, whatever the entry says)."""
        if not isinstance(entry, Mapping):
            return [f"{where}: expected a table of params, got {entry!r}"]
        problems = unknown_keys(where, entry, list(PARAMS))
        for name, v in entry.items():
            p = self.params.get(name)
            if p is not None and not p.fixed and (why := p.refuses(v)) is not None:
                problems.append(f"{where}.{name}: {why}")
        return problems

    def searched(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """The values of an enqueue entry for the params this space searches, typed as the
        trial suggests them."""
        return {n: typed(n, v) for n, v in entry.items() if not self.params[n].fixed}

    def fixed_values(self) -> dict[str, Any]:
        return {n: p.value for n, p in self.params.items() if p.fixed}

    def max(self, name: str) -> Any:
        return self.params[name].values_max()

    def min(self, name: str) -> Any:
        return self.params[name].values_min()

    def min_epochs(self) -> int:
        return int(self.min("epochs"))

    def as_dict(self) -> dict[str, Any]:
        return {n: self.params[n].as_dict() for n in PARAMS}
