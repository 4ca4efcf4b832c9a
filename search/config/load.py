"""One frozen, validated run configuration from built-in defaults < study TOML < CLI flags.

Every problem (unknown key with a "did you mean", bad type, bad range) is collected and
reported together, naming the TOML key or the flag.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from data import ConfigError
from models.metrics import CLASSIFICATION_ONLY, OBJECTIVES, REGRESSION_ONLY
from search.config.schema import PRECISIONS, PRUNERS, SAMPLERS, SECTIONS, RunConfig
from search.config.space import PARAMS, Param, SearchSpace, parse_param

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_CONFIG = ROOT / "studies" / "default.toml"

# The default study's space (studies/default.toml writes the same): a GPU-sized search.
DEFAULT_SPACE: dict[str, Any] = {
    "model": "lstm",
    "time_steps": {"low": 5, "high": 60},
    "num_layers": {"low": 1, "high": 3},
    "hidden_dim": {"low": 16, "high": 256, "log": True},
    "head_dim": {"choices": [0, 16, 32, 64]},
    "dropout": {"low": 0.0, "high": 0.5},
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "batch_size": {"choices": [256, 512, 1024, 2048]},
    "epochs": 10,
    "optimizer": {"choices": ["adam", "adamw", "sgd", "rmsprop"]},
    "grad_clip": {"low": 0.1, "high": 10.0, "log": True},
}
# Limits applied on a CPU device to the params and budget a study's TOML does not set itself
# (its own [cpu] table applies over everything). Sized so 600 trials of the default study
# on the bundled data fit well inside an hour on two cores; `[cpu] limits = false` turns them off.
DEFAULT_CPU_SPACE: dict[str, Any] = {
    "time_steps": {"low": 5, "high": 20},
    "num_layers": {"low": 1, "high": 2},
    "hidden_dim": {"low": 8, "high": 48, "log": True},
    "head_dim": {"choices": [0, 16, 32]},
    "batch_size": {"choices": [256, 512, 1024]},
    "epochs": 6,
}
DEFAULT_CPU_BUDGET: dict[str, Any] = {
    "max_windows_per_epoch": 65536,
    "val_dates": 48,
    "val_windows": 4096,
}

TOP_KEYS = [*SECTIONS, "space", "cpu"]


def _did_you_mean(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(where: str, got: dict[str, Any], known: list[str], problems: list[str]) -> None:
    for k in got:
        if k not in known:
            problems.append(
                f"{where}: unknown key {k!r}{_did_you_mean(k, known)}; known keys are {known}"
            )


def read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError([f"{path}: config file not found (--config)"])
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"]) from None


def _section(
    cls: Any, name: str, raw: dict[str, Any], flags: dict[str, Any], problems: list[str]
) -> Any:
    """Build one section dataclass from TOML values and flags, collecting problems."""
    known = [f.name for f in fields(cls)]
    if not isinstance(raw, dict):
        problems.append(f"[{name}]: expected a table, got {raw!r}")
        raw = {}
    _unknown(f"[{name}]", raw, known, problems)
    kw: dict[str, Any] = {}
    types = {f.name: f.type for f in fields(cls)}
    for k, v in {**raw, **{k: v for k, v in flags.items() if v is not None}}.items():
        if k not in known:
            continue
        t = str(types[k])
        if "float" in t and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if "tuple" in t and isinstance(v, str):
            v = (v,)
        if "tuple" in t and isinstance(v, list):
            v = tuple(v)
        want = _expected(t)
        if want and not any(_is(v, w) for w in want):
            problems.append(f"[{name}] {k}: expected {' or '.join(want)}, got {v!r}")
            continue
        kw[k] = v
    try:
        return cls(**kw)
    except ConfigError as e:
        problems.extend(_blame_flags(e.problems, name, flags))
    except (TypeError, ValueError) as e:
        problems.append(f"[{name}]: {e}")
    return None


def _blame_flags(problems: list[str], section: str, flags: dict[str, Any]) -> list[str]:
    """A bad value given on the command line is named by its flag, not by the TOML key."""
    names = {"path": "--data", "name": "--study-name"}
    out = []
    for p in problems:
        for k, v in flags.items():
            prefix = f"[{section}] {k}"
            rest = p[len(prefix) :]
            if v is not None and p.startswith(prefix) and rest[:1] in (":", " "):
                if rest.startswith(" (--"):
                    rest = rest[rest.index(")") + 1 :]
                p = names.get(k, f"--{k.replace('_', '-')}") + rest
                break
        out.append(p)
    return out


def default_config_path() -> Path:
    """The default study TOML: beside the packages (a source checkout or editable install),
    else ./studies/default.toml (a plain install run from the Docker image's /app)."""
    local = Path("studies") / "default.toml"
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() or not local.exists() else local


def inherit_data(
    data_raw: dict[str, Any], config_path: Path, flag_path: str | None
) -> tuple[dict[str, Any], list[str]]:
    """[data] settings a study TOML leaves out come from the default study's [data] table,
    its file (the bundled sample) included when neither the TOML nor --data names one."""
    default = default_config_path().resolve()
    if config_path == default or not default.exists():
        return data_raw, []
    base = read_toml(default).get("data", {})
    if isinstance(base.get("path"), str):
        base["path"] = str((default.parent / base["path"]).resolve())
    notes = []
    if "path" not in data_raw and not flag_path and "path" in base:
        notes.append(
            f"{config_path.name} names no data file ([data] path, --data): using the default "
            f"study's, {base['path']}"
        )
    return {**base, **data_raw}, notes


def _expected(t: str) -> list[str]:
    out = []
    for w in ("bool", "int", "float", "str", "tuple", "None"):
        if w in t.replace("builtins.", ""):
            out.append(w)
    return out


def _is(v: Any, w: str) -> bool:
    if w == "None":
        return v is None
    if w == "bool":
        return isinstance(v, bool)
    if w == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if w == "float":
        return isinstance(v, float)
    if w == "str":
        return isinstance(v, str)
    if w == "tuple":
        return isinstance(v, tuple) and all(isinstance(x, str) for x in v)
    return True


def _space(
    toml_space: dict[str, Any],
    cpu_space: dict[str, Any],
    cpu: bool,
    limits: bool,
    problems: list[str],
) -> SearchSpace | None:
    raw = dict(DEFAULT_SPACE)
    if cpu and limits:
        raw.update({k: v for k, v in DEFAULT_CPU_SPACE.items() if k not in toml_space})
    raw.update(toml_space)
    if cpu:
        raw.update(cpu_space)
    for where, table in (("[space]", toml_space), ("[cpu.space]", cpu_space)):
        _unknown(where, table, list(PARAMS), problems)
    params: dict[str, Param] = {}
    n = len(problems)
    for name in PARAMS:
        where = "[cpu.space]" if cpu and name in cpu_space else "[space]"
        p = parse_param(name, raw[name], where, problems)
        if p is not None:
            params[name] = p
    return SearchSpace(params) if len(problems) == n else None


def build_config(
    config_path: Path | None,
    *,
    cpu: bool,
    flags: dict[str, dict[str, Any]] | None = None,
) -> RunConfig:
    """Resolve the run config: built-in defaults < TOML < flags; raise ConfigError once.

    `flags` maps a section name to {key: value} given on the command line (None = absent).
    `cpu` says whether training runs on a CPU device ([cpu] limits apply).
    """
    flags = flags or {}
    default_config = config_path is None
    if config_path is None:
        config_path = default_config_path()
    path = config_path.resolve()
    raw = read_toml(path)
    problems: list[str] = []
    _unknown(str(path.name), raw, TOP_KEYS, problems)
    data_raw = dict(raw.get("data", {})) if isinstance(raw.get("data"), dict) else {}
    if "path" in data_raw and isinstance(data_raw["path"], str):
        data_raw["path"] = str((path.parent / data_raw["path"]).resolve())
    data_flags = dict(flags.get("data", {}))
    if data_flags.get("path"):
        data_flags["path"] = str(Path(data_flags["path"]).resolve())
    data_raw, notes = inherit_data(data_raw, path, data_flags.get("path"))
    study_flags = dict(flags.get("study", {}))
    study_raw = raw.get("study", {})
    named = isinstance(study_raw, dict) and "name" in study_raw
    # Other data than the default config's, no study named: a study of its own (the default
    # study's name is for the default data; its trials would not mix anyway).
    if not study_flags.get("name") and (not named or (default_config and data_flags.get("path"))):
        data_file = data_flags.get("path") or data_raw.get("path")
        if isinstance(data_file, str) and data_file:
            study_flags["name"] = Path(data_file).stem
            notes.append(f"study name {study_flags['name']!r}: the data file's stem ([study] name)")
    cpu_raw = raw.get("cpu", {})
    if not isinstance(cpu_raw, dict):
        problems.append(f"[cpu]: expected a table, got {cpu_raw!r}")
        cpu_raw = {}
    _unknown("[cpu]", cpu_raw, ["limits", "space", "budget"], problems)
    limits = cpu_raw.get("limits", True)
    if not isinstance(limits, bool):
        problems.append(f"[cpu] limits: expected true or false, got {limits!r}")
        limits = True
    budget_raw = dict(raw.get("budget", {})) if isinstance(raw.get("budget"), dict) else {}
    if cpu:
        if limits:
            for k, v in DEFAULT_CPU_BUDGET.items():
                budget_raw.setdefault(k, v)
        budget_raw.update(cpu_raw.get("budget", {}))
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        table = {"data": data_raw, "budget": budget_raw}.get(name, raw.get(name, {}))
        given = {"data": data_flags, "study": study_flags}.get(name, flags.get(name, {}))
        sections[name] = _section(cls, name, table, given, problems)
    search = sections["search"]
    if search is not None:
        if search.sampler not in SAMPLERS:
            problems.append(
                f"--sampler / [search] sampler: unknown sampler {search.sampler!r}"
                f"{_did_you_mean(search.sampler, list(SAMPLERS))}; valid names are {list(SAMPLERS)}"
            )
        if search.pruner not in PRUNERS:
            problems.append(
                f"--pruner / [search] pruner: unknown pruner {search.pruner!r}"
                f"{_did_you_mean(search.pruner, list(PRUNERS))}; valid names are {list(PRUNERS)}"
            )
        if search.n_startup_trials < 0:
            problems.append("[search] n_startup_trials: must be >= 0")
        if search.seeds < 1:
            problems.append(f"--seeds / [search] seeds: must be >= 1, got {search.seeds}")
    study = sections["study"]
    if study is not None:
        if not study.name.strip():
            problems.append("--study-name / [study] name: must not be empty")
        objs = study.objectives
        for o in objs:
            if o not in OBJECTIVES:
                problems.append(
                    f"--objective / [study] objective: unknown objective {o!r}"
                    f"{_did_you_mean(o, list(OBJECTIVES))}; valid names are {list(OBJECTIVES)}"
                )
        if not objs:
            problems.append("--objective / [study] objective: must name at least one objective")
        if len(set(objs)) != len(objs):
            problems.append(f"--objective / [study] objective: {study.objective!r} repeats a name")
        task = sections["data"].task if sections["data"] is not None else "regression"
        wrong = CLASSIFICATION_ONLY if task == "regression" else REGRESSION_ONLY
        for o in objs:
            if o in wrong:
                problems.append(
                    f"--objective / [study] objective: {o!r} does not apply to [data] task = "
                    f"{task!r}"
                )
    budget = sections["budget"]
    if budget is not None:
        for k in ("max_windows_per_epoch", "patience", "val_dates", "val_windows"):
            if getattr(budget, k) < 0:
                problems.append(f"[budget] {k}: must be >= 0, got {getattr(budget, k)}")
        if budget.eval_batch_size < 1:
            problems.append(f"[budget] eval_batch_size: must be >= 1, got {budget.eval_batch_size}")
        if budget.precision not in PRECISIONS:
            problems.append(
                f"[budget] precision: expected one of {', '.join(PRECISIONS)}, "
                f"got {budget.precision!r}"
            )
        elif cpu and budget.precision != "fp32":
            problems.append(
                f"[budget] precision: {budget.precision!r} needs a CUDA device; on a CPU set "
                '[cpu.budget] precision = "fp32" (or run with --device cuda)'
            )
    storage = sections["storage"]
    if storage is not None:
        if storage.heartbeat_interval < 1:
            problems.append("[storage] heartbeat_interval: must be >= 1 second")
        if storage.grace_period <= storage.heartbeat_interval:
            problems.append(
                "[storage] grace_period: must be longer than heartbeat_interval, got "
                f"{storage.grace_period} <= {storage.heartbeat_interval}"
            )
        if storage.max_retry < 0:
            problems.append("[storage] max_retry: must be >= 0")
    toml_space = raw.get("space", {})
    cpu_space = cpu_raw.get("space", {})
    if not isinstance(toml_space, dict) or not isinstance(cpu_space, dict):
        problems.append("[space] / [cpu.space]: expected tables")
        toml_space, cpu_space = {}, {}
    space = _space(toml_space, cpu_space, cpu, limits, problems)
    if problems:
        raise ConfigError([f"{path}: {p}" if p.startswith("[") else p for p in problems])
    assert space is not None
    return RunConfig(
        study=sections["study"],
        data=sections["data"],
        budget=budget,
        search=search,
        storage=storage,
        space=space,
        config_path=str(path),
        cpu_limits=bool(cpu and limits),
        notes=tuple(notes),
    )
