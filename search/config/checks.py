"""What a RunConfig cannot check about itself: the device it trains on, and who is to blame
for a bad value (a flag, an override or the study TOML)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from models.train import cpu_bf16_works
from search.config.schema import BudgetConfig

FLAG_NAMES = {"path": "--data", "name": "--study-name"}


def device_problems(budget: BudgetConfig, cpu: bool) -> list[str]:
    """float16 training (its gradient scaler) needs a CUDA device; bfloat16 on a CPU, one
    whose oneDNN runs the RNNs in it."""
    if cpu and budget.precision == "fp16":
        bf16 = ' or "bf16"' if cpu_bf16_works() else ""
        return [
            f"[budget] precision: {budget.precision!r} needs a CUDA device; on a CPU set "
            f'[cpu.budget] precision = "fp32"{bf16} (or run with --device cuda)'
        ]
    if cpu and budget.precision == "bf16" and not cpu_bf16_works():
        return [
            "[budget] precision: 'bf16' needs a CUDA device or a CPU with AVX-512 or AMX "
            'bfloat16 (this one has neither); set [cpu.budget] precision = "fp32" (or run '
            "with --device cuda)"
        ]
    return []


def blame_flags(problems: list[str], section: str, flags: Mapping[str, Any]) -> list[str]:
    """A bad value given on the command line is named by its flag, not by the TOML key."""
    out = []
    for p in problems:
        for k, v in flags.items():
            prefix = f"[{section}] {k}"
            rest = p[len(prefix) :]
            if v is not None and p.startswith(prefix) and rest[:1] in (":", " "):
                if rest.startswith(" (--"):
                    rest = rest[rest.index(")") + 1 :]
                p = FLAG_NAMES.get(k, f"--{k.replace('_', '-')}") + rest
                break
        out.append(p)
    return out


def blame_cpu(problems: list[str], section: str, cpu_keys: Collection[str]) -> list[str]:
    """A bad value of [SECTION] that [cpu.SECTION] set (on a CPU) is named by that table."""
    out = []
    for p in problems:
        for k in cpu_keys:
            prefix = f"[{section}] {k}"
            if p.startswith(prefix) and p[len(prefix) : len(prefix) + 1] in (":", " "):
                p = f"[cpu.{section}] {k}{p[len(prefix) :]}"
                break
        out.append(p)
    return out


def _override_keys(overrides: Mapping[str, Any], table: str = "") -> list[str]:
    """The beginnings of the problems a key of `overrides` can cause: `[data] horizon`,
    `[space].epochs`, `[cpu.space]: unknown key 'x'`."""
    out = []
    for k, v in overrides.items():
        if table:
            out += [f"[{table}] {k}", f"[{table}].{k}", f"[{table}]: unknown key {k!r}"]
        if isinstance(v, Mapping):
            out += _override_keys(v, f"{table}.{k}" if table else k)
    return out


def blame_file(problems: list[str], path: str, overrides: Mapping[str, Any]) -> list[str]:
    """A TOML key's problem names the file (an override's: `overrides`); a flag's stands as
    it is."""
    keys = _override_keys(overrides)
    out = []
    for p in problems:
        if any(p.startswith(k) and not p[len(k) : len(k) + 1].isidentifier() for k in keys):
            out.append(f"overrides: {p}")
        elif p.startswith("["):
            out.append(f"{path}: {p}")
        else:
            out.append(p)
    return out
