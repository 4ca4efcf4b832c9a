"""How much of a study's edge is luck: the probability of backtest overfitting of its
selection and the deflated Sharpe ratio of its best trial (models.luck), from the per-date
validation values every complete trial keeps (user attr `daily_values`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna

from models.luck import luck_summary

ATTR = "daily_values"


def daily_matrix(
    trials: list[optuna.trial.FrozenTrial],
) -> tuple[np.ndarray, list[int], str | None, list[list[int]] | None]:
    """(T dates x N trials) matrix of the complete trials' per-date values, their numbers,
    the metric and the date ranges; trials whose dates or metric differ from the first one's
    are left out (a study resumed under another split; the horizon is the data's, which a
    study keeps)."""
    cols: list[list[float]] = []
    numbers: list[int] = []
    metric, ranges = None, None
    for t in trials:
        d = t.user_attrs.get(ATTR)
        if t.state != optuna.trial.TrialState.COMPLETE or not isinstance(d, dict):
            continue
        if metric is None:
            metric, ranges = d.get("metric"), d.get("ranges")
        if d.get("metric") != metric or d.get("ranges") != ranges:
            continue
        cols.append([math.nan if v is None else float(v) for v in d.get("values", [])])
        numbers.append(t.number)
    if not cols:
        return np.zeros((0, 0)), [], None, None
    return np.array(cols, dtype=np.float64).T, numbers, metric, ranges


def _selected(study: optuna.Study) -> int | None:
    """The trial the study selects: the confirmed winner, else the best (first objective)."""
    winner = (study.user_attrs.get("confirm") or {}).get("winner")
    if isinstance(winner, int):
        return winner
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return None
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    return max(done, key=lambda t: (sign * t.values[0], -t.number)).number


def study_luck(study: optuna.Study, n_blocks: int = 16, effective: bool = True) -> dict[str, Any]:
    """PBO of the study's selection over `n_blocks` date blocks and the deflated Sharpe of
    its selected trial (N = the complete and pruned trials: every one tried and kept or
    rejected on validation; with `effective`, also N_eff), as a
    JSON-ready dict; `note` says why a figure is missing."""
    m, numbers, metric, ranges = daily_matrix(study.trials)
    if metric is None or len(numbers) < 2:
        complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
        if not numbers and complete >= 2:
            return {
                "note": f"none: the {complete} complete trials keep no per-date values "
                "(their objective has none: auc, or a correlation on one series, one "
                "security a date; or they were recorded without them)"
            }
        return {"note": f"needs per-date values of two complete trials, has {len(numbers)}"}
    pick = _selected(study)
    col = numbers.index(pick) if pick in numbers else None
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    tried = sum(t.state in finished for t in study.trials)
    out = luck_summary(
        m, metric, col, n_blocks, effective, overlap=_horizon(study.trials), tried=tried
    )
    out["winner"] = None if out["winner"] is None else numbers[out["winner"]]
    out["ranges"] = ranges
    if out["dsr"] is None:
        out["note"] = f"no deflated Sharpe for {metric} (0 is not its no-skill value)"
    return _json(out)


def _horizon(trials: list[optuna.trial.FrozenTrial]) -> int:
    """The forward-return horizon the per-date values were scored on: the one any trial
    recorded (trials before it was recorded have none; a study keeps its data), else 1."""
    for t in trials:
        d = t.user_attrs.get(ATTR)
        h = d.get("horizon") if isinstance(d, dict) else None
        if isinstance(h, int) and h > 0:
            return h
    return 1


def record_luck(study: optuna.Study) -> dict[str, Any] | None:
    """`study_luck` stored as the study's `luck` user attr (after a search, after confirm);
    None for a study of several objectives (no single selection to judge)."""
    if len(study.directions) > 1:
        return None
    luck = study_luck(study)
    study.set_user_attr("luck", luck)
    return luck


def _json(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json(x) for k, x in v.items()}
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# below this many trials with per-date values, the PBO and the deflated Sharpe are said rough
FEW_TRIALS = 10


def _f(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None else format(v, fmt)


def format_luck(luck: dict[str, Any]) -> str:
    """Two lines: the PBO of the selection, the deflated Sharpe of the winner; a third
    below FEW_TRIALS trials with per-date values, saying both are rough."""
    if "pbo" not in luck:
        return f"luck: {luck.get('note', 'not measured')}"
    p = luck["pbo"]
    lines = [
        f"probability of backtest overfitting: {_f(p.get('pbo'))} ({_f(p.get('trials'), ',')} "
        f"trials, {_f(p.get('dates'), ',')} dates in {_f(p.get('blocks'), ',')} blocks, "
        f"{_f(p.get('combinations'), ',')} splits, by {p.get('by')} of the daily "
        f"{luck['metric']}; 0.5 = the choice is noise)"
    ]
    d = luck.get("dsr")
    if d:
        lines.append(
            f"deflated Sharpe of trial {luck['winner']}: {_f(d['dsr'])} (per-date Sharpe "
            f"{_f(d['sharpe'])} vs {_f(d['sharpe0'])} expected of the best of "
            f"{_f(d['trials'], '.0f')} skill-less trials"
            + (
                f", every trial tried: {d['complete']} with per-date values, the rest pruned"
                if d.get("complete") is not None and d["complete"] < d["trials"]
                else ""
            )
            + "; > 0.95 = significant"
            + (
                f"; {d['dates']:,} dates of {d['overlap']}-date returns count as "
                f"{d['dates'] / d['overlap']:.0f})"
                if d.get("overlap")
                else ")"
            )
        )
        e = luck.get("dsr_effective")
        if e:
            lines[-1] += f"; {_f(e['dsr'])} with {_f(e['trials'], '.1f')} effective trials"
    else:
        lines.append(f"deflated Sharpe: {luck.get('note', 'n/a')}")
    n = p.get("trials")
    if isinstance(n, int) and n < FEW_TRIALS:
        lines.append(
            f"(rough: {n} trials with per-date values; the spread of their Sharpes sets the "
            f"deflated Sharpe's bar and their ranks the PBO, and below {FEW_TRIALS} trials "
            "neither is measured well)"
            if d
            else f"(rough: the PBO ranks {n} trials with per-date values; below {FEW_TRIALS} "
            "it is not measured well)"
        )
    return "\n".join(lines)
