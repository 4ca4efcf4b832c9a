"""Export a study's best trial as JSON (atomically) and its trials as CSV or Parquet."""

from __future__ import annotations

import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

from models.metrics import WEIGHTED
from search.study.notes import versions


class ExportError(ValueError):
    pass


def _follow_umask(fd: int) -> None:
    """mkstemp makes 0600 files; an export is an ordinary file: 0666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)


def atomic_write(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    _follow_umask(fd)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _trial_record(
    trial: optuna.trial.FrozenTrial,
    fixed: dict[str, Any],
    multi: bool,
    left_out: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    a = trial.user_attrs
    return {
        ("values" if multi else "value"): trial.values if multi else trial.value,
        "trial_number": trial.number,
        "seed": a.get("seed"),
        "seed_std": a.get("seed_std"),
        "best_epoch": a.get("best_epoch"),
        "epochs_run": a.get("epochs_run"),
        "params": {**fixed, **trial.params},
        "searched_params": list(trial.params),
        "metrics": {k: v for k, v in a.items() if k.startswith("val_") and k not in left_out},
    }


def left_out_metrics(config: dict[str, Any]) -> frozenset[str]:
    """The metrics an export leaves out: those of a weight column, for a study without one
    (unless an objective names them)."""
    data, study = config.get("data") or {}, config.get("study") or {}
    if not data or data.get("weight"):
        return frozenset()
    objectives = {o.strip() for o in str(study.get("objective", "")).split(",")}
    return frozenset(f"val_{m}" for m in WEIGHTED if m not in objectives)


def best_record(study: optuna.Study) -> dict[str, Any]:
    """The selected trial: the confirmed winner when `confirm` ran (its `value` and `seed_std`
    then the confirmed mean and spread, the search's as `search_value` and `search_seed_std`),
    else the best trial; a study of several objectives exports its Pareto front."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise ExportError(
            f"study {study.study_name!r} has no COMPLETE trial yet: nothing to export"
        )
    spec = study.user_attrs.get("spec", {})
    config = study.user_attrs.get("config", {})
    confirmed = study.user_attrs.get("confirm")
    fixed = {k: v for k, v in spec.get("space", {}).items() if not isinstance(v, dict)}
    multi = len(study.directions) > 1
    left_out = left_out_metrics(config)
    head: dict[str, Any] = {
        "study_name": study.study_name,
        "direction": ",".join(d.name.lower() for d in study.directions),
        "objective": spec.get("objective"),
    }
    if multi:
        front = study.best_trials
        head["pareto_front"] = [_trial_record(t, fixed, True, left_out) for t in front]
    else:
        winner = study.best_trial
        if confirmed:
            winner = next(t for t in done if t.number == int(confirmed["winner"]))
        head.update(_trial_record(winner, fixed, False, left_out))
        head["selected_by"] = "confirm" if confirmed else "best value"
        row = (confirmed or {}).get("trials", {}).get(str(winner.number))
        if row:  # the confirmed mean and spread over fresh seeds; the search's kept beside
            head["search_value"], head["search_seed_std"] = head["value"], head["seed_std"]
            head["value"], head["seed_std"] = row["mean"], row["std"]
    if confirmed:
        head["confirm"] = {k: v for k, v in confirmed.items() if k != "verdict"}
    for key in ("verdict", "verdict_exact"):  # the final model's; `train --exact`'s
        if study.user_attrs.get(key):
            head[key] = study.user_attrs[key]
    if not multi:
        from search.study.luck import study_luck

        head["luck"] = study.user_attrs.get("luck") or study_luck(study)
    return {
        **head,
        "data_fingerprint": spec.get("data_fingerprint"),
        "config": config,
        "versions": versions(),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def export_best(study: optuna.Study, out: Path) -> dict[str, Any]:
    record = best_record(study)
    atomic_write(out, json.dumps(record, indent=2, default=str) + "\n")
    return record


def check_trials_path(out: Path) -> None:
    if out.suffix not in (".csv", ".parquet"):
        raise ExportError(f"--trials {out}: expected a .csv or .parquet file name")


def _json(v: Any) -> str:
    """`v` as JSON text, a non-finite float as null."""
    return json.dumps(_finite(v), allow_nan=False)


def _finite(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def export_trials(study: optuna.Study, out: Path) -> int:
    """All trials as a table (CSV or Parquet by suffix); returns the row count."""
    check_trials_path(out)
    df = study.trials_dataframe(
        attrs=(
            "number",
            "value",
            "datetime_start",
            "datetime_complete",
            "duration",
            "params",
            "user_attrs",
            "state",
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    _follow_umask(fd)
    os.close(fd)
    try:
        if out.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:  # a dict or list attr (daily_values, member_values) as JSON, not Python's repr
            for col in [c for c in df.columns if df[c].dtype == object]:
                df[col] = df[col].map(lambda v: _json(v) if isinstance(v, dict | list) else v)
            df.to_csv(tmp, index=False)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return len(df)
