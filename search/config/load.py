"""A RunConfig from built-in defaults < study TOML < overrides < flags.

Every problem (unknown key with a "did you mean", bad type, bad range) is collected and
reported together, naming the TOML key, the override or the flag.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from data import ConfigError
from data.fields import Checked, unknown_keys
from search.config.checks import blame_cpu, blame_file, blame_flags, device_problems
from search.config.schema import (
    SECTIONS,
    RunConfig,
    enqueue_problems,
    input_bins_problems,
    objective_task_problems,
    ranked_features,
)
from search.config.space import PARAMS, SearchSpace, parse_space

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
    "input_bins": {"choices": [0, 8, 16]},  # 0 (fixed) unless normalize is "cs_rank[+level]"
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
    "input_bins": 0,  # on a CPU the pieces slowed the search, its final fit no better (RESULTS)
    "batch_size": {"choices": [256, 512, 1024]},
    "epochs": 6,
}
DEFAULT_CPU_BUDGET: dict[str, Any] = {
    "max_windows_per_epoch": 65536,
    "val_dates": 48,
    "val_windows": 4096,
    "report_every": 8192,  # a report every eighth of an epoch (bench/RESULTS.md)
}

# The final fit on a CPU: every window, fewer epochs (measured in bench/RESULTS.md, "The
# final fit").
DEFAULT_CPU_FINAL: dict[str, Any] = {"epochs": 8}
CPU_TABLES = {"budget": DEFAULT_CPU_BUDGET, "final": DEFAULT_CPU_FINAL}

TOP_KEYS = [*SECTIONS, "space", "cpu"]
Flags = Mapping[str, Mapping[str, Any]]


def read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError([f"{path}: config file not found (--config)"])
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"]) from None


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


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` laid on `base` table by table, key by key."""
    out = dict(base)
    for k, v in over.items():
        old = out.get(k)
        out[k] = _merge(old, v) if isinstance(old, Mapping) and isinstance(v, Mapping) else v
    return out


def _table(raw: Mapping[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    t = raw.get(name, {})
    if not isinstance(t, Mapping):
        problems.append(f"[{name}]: expected a table, got {t!r}")
        return {}
    return dict(t)


def _section(
    cls: type[Checked],
    name: str,
    table: Any,
    given: Mapping[str, Any],
    problems: list[str],
    cpu_keys: Collection[str] = (),
) -> Any:
    """One section from its TOML table and flags (None: absent), collecting problems; a bad
    value of `cpu_keys` is named by [cpu.NAME], which set it."""
    given = {k: v for k, v in given.items() if v is not None}
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    problems += unknown_keys(f"flags[{name!r}]", given, known)
    given = {k: v for k, v in given.items() if k in known}
    merged = {**table, **given} if isinstance(table, Mapping) else table
    try:
        return cls.from_dict(merged, where=f"[{name}]")
    except ConfigError as e:
        problems += blame_cpu(blame_flags(e.problems, name, given), name, cpu_keys)
    return None


def _space(
    toml_space: dict[str, Any],
    cpu_space: dict[str, Any],
    cpu: bool,
    limits: bool,
    ranked: bool,
    problems: list[str],
) -> SearchSpace | None:
    raw = dict(DEFAULT_SPACE)
    if not ranked:  # the pieces cover a per-date rank; other scalings keep the raw features
        raw["input_bins"] = 0
    if cpu and limits:
        raw.update({k: v for k, v in DEFAULT_CPU_SPACE.items() if k not in toml_space})
    raw.update(toml_space)
    if cpu:
        raw.update(cpu_space)
    for where, table in (("[space]", toml_space), ("[cpu.space]", cpu_space)):
        problems += unknown_keys(where, table, list(PARAMS))
    return parse_space(
        raw, lambda name: "[cpu.space]" if cpu and name in cpu_space else "[space]", problems
    )


def _data(
    raw: Mapping[str, Any], path: Path, flags: Flags, problems: list[str]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The [data] table (its file resolved against the TOML's folder, the default study's
    settings for what it leaves out), the data flags (--data resolved against the working
    folder; id "" = the file is one series, no id column) and what was filled in."""
    data_raw = _table(raw, "data", problems)
    if isinstance(data_raw.get("path"), str):
        data_raw["path"] = str((path.parent / data_raw["path"]).resolve())
    data_flags = dict(flags.get("data", {}))
    if data_flags.get("path"):
        data_flags["path"] = str(Path(data_flags["path"]).resolve())
    if data_flags.get("id") == "":
        del data_flags["id"]
        data_raw["id"] = None
    data_raw, notes = inherit_data(data_raw, path, data_flags.get("path"))
    return data_raw, data_flags, notes


def _study_flags(
    raw: Mapping[str, Any],
    data_file: Any,
    flags: Flags,
    default_config: bool,
    data_flag: bool,
) -> tuple[dict[str, Any], list[str]]:
    """The study flags, with a name of its own for a study of other data than the default
    config's that names none (the default study's name is for the default data; its trials
    would not mix anyway)."""
    study_flags = dict(flags.get("study", {}))
    study_raw = raw.get("study", {})
    named = isinstance(study_raw, Mapping) and "name" in study_raw
    if study_flags.get("name") or (named and not (default_config and data_flag)):
        return study_flags, []
    if not isinstance(data_file, str) or not data_file:
        return study_flags, []
    study_flags["name"] = Path(data_file).stem
    return study_flags, [f"study name {study_flags['name']!r}: the data file's stem ([study] name)"]


def _cpu(raw: Mapping[str, Any], problems: list[str]) -> tuple[dict[str, Any], bool]:
    cpu_raw = _table(raw, "cpu", problems)
    problems += unknown_keys("[cpu]", cpu_raw, ["limits", "space", *CPU_TABLES])
    limits = cpu_raw.get("limits", True)
    if not isinstance(limits, bool):
        problems.append(f"[cpu] limits: expected true or false, got {limits!r}")
        limits = True
    for sub in ("space", *CPU_TABLES):
        if not isinstance(cpu_raw.get(sub, {}), Mapping):
            problems.append(f"[cpu.{sub}]: expected a table, got {cpu_raw[sub]!r}")
            cpu_raw[sub] = {}
    for sub in CPU_TABLES:  # checked on any device; the known keys are laid over [SUB]
        table = dict(cpu_raw.get(sub, {}))
        known = [f.name for f in fields(SECTIONS[sub])]  # type: ignore[arg-type]
        problems += unknown_keys(f"[cpu.{sub}]", table, known)
        cpu_raw[sub] = {k: v for k, v in table.items() if k in known}
    return cpu_raw, limits


def _cpu_sized(
    raw: Mapping[str, Any], cpu_raw: dict[str, Any], name: str, cpu: bool, limits: bool
) -> Any:
    """Table `name` ([budget], [final]) with the built-in CPU limits and [cpu.NAME] over it
    when training runs on a CPU."""
    table = raw.get(name, {})
    if not cpu or not isinstance(table, Mapping):
        return table
    return {
        **(CPU_TABLES[name] if limits else {}),
        **table,
        **cpu_raw.get(name, {}),
    }


def _read(toml: Path, overrides: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """The study TOML with `overrides` laid over it (their data file resolved against the
    working folder, as --data is)."""
    file_raw = read_toml(toml)
    problems += unknown_keys(str(toml), file_raw, TOP_KEYS)
    problems += unknown_keys("overrides", overrides, TOP_KEYS)
    over_data = overrides.get("data")
    if isinstance(over_data, Mapping) and isinstance(over_data.get("path"), str):
        resolved = str(Path(over_data["path"]).resolve())
        overrides = {**overrides, "data": {**over_data, "path": resolved}}
    merged = _merge(file_raw, overrides)
    # an override is the caller's last word: it beats the file's [cpu.*] for the keys it sets
    cpu = merged.get("cpu")
    if isinstance(cpu, Mapping):
        cpu = dict(cpu)
        for sub in ("space", *CPU_TABLES):
            over, table = overrides.get(sub), cpu.get(sub)
            if isinstance(over, Mapping) and isinstance(table, Mapping):
                cpu[sub] = {k: v for k, v in table.items() if k not in over}
        merged["cpu"] = cpu
    return merged


def _shadowed(raw: Mapping[str, Any], cpu_raw: Mapping[str, Any]) -> list[str]:
    """Notes for the keys a TOML sets in [space], [budget] or [final] that its own [cpu.*]
    table sets otherwise: on a CPU device the [cpu.*] value is the one used."""
    notes = []
    for sub in ("space", *CPU_TABLES):
        table, cpu_table = raw.get(sub), cpu_raw.get(sub)
        if not isinstance(table, Mapping) or not isinstance(cpu_table, Mapping):
            continue
        keys = [k for k in table if k in cpu_table and table[k] != cpu_table[k]]
        if keys:
            notes.append(
                f"on a CPU device [cpu.{sub}] sets {', '.join(keys)} over [{sub}] "
                f"(edit [cpu.{sub}] to change them there, or set [cpu] limits = false)"
            )
    return notes


def load_config(
    *,
    path: str | Path | None = None,
    cpu: bool = False,
    flags: Flags | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunConfig:
    """The run config: built-in defaults < the study TOML at `path` (None: the default
    study) < `overrides` < `flags`; raise one ConfigError naming every problem.

    `overrides` is laid over the TOML as if written in it, table by table
    (`{"space": {"epochs": 2}, "data": {"horizon": 5}}`; a data file given here resolves
    against the working folder). `flags` maps a section name to {key: value} given on the
    command line (None = absent; `{"data": {"id": ""}}`: the file is one series). `cpu`
    says whether training runs on a CPU device ([cpu] limits apply).
    """
    flags = flags or {}
    overrides = overrides or {}
    toml = Path(path) if path is not None else default_config_path()
    toml = toml.resolve()
    problems: list[str] = []
    raw = _read(toml, overrides, problems)
    data_raw, data_flags, notes = _data(raw, toml, flags, problems)
    study_flags, named = _study_flags(
        raw,
        data_flags.get("path") or data_raw.get("path"),
        flags,
        path is None,
        bool(data_flags.get("path")),
    )
    notes += named
    cpu_raw, limits = _cpu(raw, problems)
    if cpu and toml != default_config_path().resolve():  # the default study's are by design
        notes += _shadowed(raw, cpu_raw)
    tables: dict[str, Any] = {
        "data": data_raw,
        **{name: _cpu_sized(raw, cpu_raw, name, cpu, limits) for name in CPU_TABLES},
    }
    given: dict[str, Any] = {"data": data_flags, "study": study_flags}
    cpu_keys = {name: list(cpu_raw.get(name, {})) if cpu else [] for name in CPU_TABLES}
    sections = {
        name: _section(
            cls,
            name,
            tables.get(name, raw.get(name, {})),
            given.get(name, flags.get(name, {})),
            problems,
            cpu_keys.get(name, ()),
        )
        for name, cls in SECTIONS.items()
    }
    if sections["study"] is not None and sections["data"] is not None:
        problems += objective_task_problems(sections["study"], sections["data"].task)
    if sections["budget"] is not None:
        problems += blame_cpu(
            device_problems(sections["budget"], cpu), "budget", cpu_keys["budget"]
        )
    ranked = sections["data"] is None or ranked_features(sections["data"])
    space = _space(
        _table(raw, "space", problems), cpu_raw.get("space", {}), cpu, limits, ranked, problems
    )
    if space is not None and sections["data"] is not None:
        problems += input_bins_problems(space, sections["data"])
    if space is not None and sections["search"] is not None:
        problems += enqueue_problems(sections["search"], space)
    if problems:
        raise ConfigError(blame_file(problems, str(toml), overrides))
    assert space is not None
    return RunConfig(
        **sections,
        space=space,
        config_path=str(toml),
        cpu_limits=bool(cpu and limits),
        notes=tuple(notes),
    )


def build_config(
    config_path: str | Path | None,
    *,
    cpu: bool,
    flags: Flags | None = None,
) -> RunConfig:
    """`load_config(path=config_path, cpu=cpu, flags=flags)`: the CLI's call."""
    return load_config(path=config_path, cpu=cpu, flags=flags)
