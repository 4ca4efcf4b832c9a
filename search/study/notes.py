"""What a person needs to read a study, written once when the study is created: study user
attrs (data summary, resolved config, package versions, device), objective names, and a
markdown note shown by optuna-dashboard (data, search space, the commands that follow)."""

from __future__ import annotations

import platform
import shlex
import warnings
from importlib import metadata
from typing import Any

import optuna

from data import DataConfig, Prepared
from data.errors import plural
from data.panel import describe as describe_panel
from search.config.paths import study_file, study_flag
from search.config.schema import RunConfig


def target_description(cfg: DataConfig) -> str:
    """The target in words: which column (or derivation) and which per-date transform."""
    what = (
        f"column {cfg.target!r}"
        if cfg.target
        else f"forward return of {cfg.close!r} over {cfg.horizon} date(s)"
    )
    if cfg.task == "classification":
        kind = "up/down" if cfg.n_classes == 2 else f"{cfg.n_classes} per-date quantile"
        return f"{what}, as {kind} classes"
    steps = []
    if cfg.target_winsor:
        steps.append(f"winsorised at {cfg.target_winsor:g} per date")
    if cfg.target_cs != "none":
        steps.append(f"{cfg.target_cs} per date")
    if cfg.target_scale != 1.0:
        steps.append(f"x {cfg.target_scale:g}")
    return what + (f" ({', '.join(steps)})" if steps else "")


def data_summary(cfg: RunConfig, data: Prepared, fingerprint: str) -> dict[str, Any]:
    """File, fingerprint, axes, features, target, split dates and windows per segment."""
    panel = data.panel
    info = describe_panel(panel)
    split: dict[str, Any] = {}
    ts = cfg.space.params["time_steps"]
    lo = int(min(ts.choices) if ts.choices else ts.value if ts.fixed else ts.low)  # type: ignore[arg-type]
    hi = int(cfg.space.max("time_steps"))
    for seg in ("train", "val", "test"):
        r = getattr(data.split, seg)
        split[seg] = {
            "dates": len(r),
            "first": panel.date_str(r.start) if len(r) else None,
            "last": panel.date_str(r.stop - 1) if len(r) else None,
            # windows ending in the segment at the shortest and longest time_steps searched
            "windows": {str(lo): data.count(seg, lo), str(hi): data.count(seg, hi)},
        }
    return {
        "file": panel.source,
        "fingerprint": fingerprint,
        "securities": info["securities"],
        "dates": info["dates"],
        "first_date": info["first_date"],
        "last_date": info["last_date"],
        "valid_share": info["valid_share"],
        "features": list(panel.feature_names),
        "target": target_description(cfg.data),
        "task": cfg.data.task,
        "split": split,
    }


def _space_lines(space: dict[str, Any]) -> list[str]:
    out = []
    for name, v in space.items():
        if isinstance(v, dict) and "choices" in v:
            out.append(f"| {name} | one of {v['choices']} |")
        elif isinstance(v, dict):
            log = ", log scale" if v.get("log") else ""
            out.append(f"| {name} | {v['low']} .. {v['high']}{log} |")
        else:
            out.append(f"| {name} | fixed: {v} |")
    return out


_OUTS = ("best.json", "report", "model.pt", "preds.csv")


def note_markdown(study_name: str, summary: dict[str, Any], cfg: RunConfig, device: str) -> str:
    """The study note: what the data are, what is searched, and how to go on."""
    feats = summary["features"]
    shown = ", ".join(feats[:20]) + (f", ... ({len(feats)} in all)" if len(feats) > 20 else "")
    rows = []
    for seg, s in summary["split"].items():
        if s["dates"]:
            w = ", ".join(f"{n} at time_steps {k}" for k, n in s["windows"].items())
            rows.append(f"| {seg} | {s['first']} .. {s['last']} | {s['dates']} | {w} |")
    name = study_name
    # the commands as a shell takes them: a name with a space or a $ quoted
    q, out = study_flag(name), {k: shlex.quote(study_file(name, k)) for k in _OUTS}
    lines = [
        f"## {name}",
        "",
        f"**Data**: `{summary['file']}` (fingerprint `{summary['fingerprint']}`): "
        f"{summary['securities']:,} {'security' if summary['securities'] == 1 else 'securities'}"
        f" x {plural(summary['dates'], 'date')} ({summary['first_date']} .. "
        f"{summary['last_date']}), {plural(len(feats), 'feature')}: {shown}.",
        "",
        f"**Target**: {summary['target']}; task {summary['task']}. "
        f"**Objective**: {cfg.study.objective} ({cfg.study.direction}d) on the validation "
        "dates, at the trial's best epoch.",
        "",
        "| segment | dates | n dates | windows |",
        "|---|---|---|---|",
        *rows,
        "",
        f"**Search**: sampler {cfg.search.sampler}, pruner {cfg.search.pruner}, device {device}"
        + (" (CPU limits applied)" if cfg.cpu_limits else "")
        + f"; config `{cfg.config_path}`.",
        "",
        "| param | searched |",
        "|---|---|",
        *_space_lines(cfg.space.as_dict()),
        "",
        "**Next**:",
        "",
        f"- `optuna-run export {q} --out {out['best.json']}`",
        f"- `optuna-run report {q} --out {out['report']}`",
        f"- `optuna-run train {q}`",
        f"- `optuna-run predict --model {out['model.pt']} --out {out['preds.csv']}`",
    ]
    return "\n".join(lines)


def annotate_study(
    study: optuna.Study, cfg: RunConfig, data: Prepared, fingerprint: str, device: str
) -> bool:
    """Set the study's data summary, versions, device and note once; True when set now."""
    if "data" in study.user_attrs:
        return False
    from optuna_dashboard import save_note

    summary = data_summary(cfg, data, fingerprint)
    study.set_user_attr("data", summary)
    study.set_user_attr("versions", versions())
    study.set_user_attr("device", device)
    if "config" not in study.user_attrs:
        study.set_user_attr("config", cfg.to_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if not study.metric_names:
            study.set_metric_names([cfg.study.objective])
    save_note(study, note_markdown(study.study_name, summary, cfg, device))
    return True


def start_lines(cfg: RunConfig, data: Prepared) -> list[str]:
    """The resolved features and target, and what was filled in for the user."""
    feats = data.panel.feature_names
    shown = ", ".join(feats[:30]) + (" ..." if len(feats) > 30 else "")
    lines = [f"note: {n}" for n in cfg.notes]
    lines.append(f"features ({len(feats)}): {shown}")
    lines.append(f"target: {target_description(cfg.data)}")
    return lines


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("lstm-panel-search", "optuna", "optuna-dashboard", "torch", "numpy", "polars"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out
