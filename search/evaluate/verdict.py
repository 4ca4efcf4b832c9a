"""The verdict: the model beside the baselines on exactly the same validation and test rows.

The best baseline is chosen on the validation dates, never on test. On test, the model
beats it when its margin exceeds both the spread of the model's metric over seeds and two
standard errors of the daily difference (paired over dates, for IC and rank IC).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from data import Prepared
from models import OBJECTIVES, evaluate
from models.baselines import baselines, missing_baselines
from models.metrics import daily_rank_ic

COLUMNS = ("mse", "ic", "rank_ic", "rank_ic_se", "rank_icir", "sharpe")
HEADERS = {
    "mse": "MSE",
    "ic": "IC",
    "rank_ic": "rank IC",
    "rank_ic_se": "(se)",
    "rank_icir": "ICIR",
    "sharpe": "Sharpe",
}
# shown beside the model, but not a "simple baseline" the verdict is decided against
REFERENCES = ("lgbm",)
NO_RANKING = ("ic", "rank_ic", "rank_icir", "sharpe", "icir", "spread")

Predictor = Callable[[torch.Tensor], torch.Tensor]


def _direction(metric: str) -> str:
    for key, direction in OBJECTIVES.values():
        if key == metric:
            return direction
    return "maximize"


def _as_logits(score: torch.Tensor) -> torch.Tensor:
    """A binary baseline's score as two-class logits (the class-1 probability rises with it)."""
    return torch.stack([-score / 2, score / 2], -1)


def _logits_of(fn: Predictor) -> Predictor:
    def predict(e: torch.Tensor) -> torch.Tensor:
        return _as_logits(fn(e))

    return predict


def _score(data: Prepared, pred: torch.Tensor, ends: torch.Tensor, name: str) -> dict[str, Any]:
    S = data.n_securities
    d, s = ends // S, ends % S
    w = None if data.weight is None else data.weight[d, s]
    m = evaluate(
        pred,
        data.target[d, s],
        d,
        w,
        data.cfg.task,
        panel=S > 1,
        periods_per_year=252 / data.cfg.horizon,
    )
    out: dict[str, Any] = {}
    for k in (*COLUMNS, "loss"):
        v = float(m[k]) if k in m else math.nan
        if name == "zero" and k in NO_RANKING:
            v = 0.0  # a constant ranks nothing
        out[k] = v if math.isfinite(v) else None
    return out


def build_verdict(
    data: Prepared,
    model: Predictor,
    member_test: list[float] | None = None,
    select: str = "rank_ic",
    tree: bool = True,
    model_name: str = "model",
) -> dict[str, Any]:
    """Score the model and every baseline on the validation and test windows; decide.

    `model` maps end points to predictions (the ensemble of the final seeds);
    `member_test`: each seed's own test value of `select`, for the seed spread.
    """
    T = data.eval_time_steps
    ends = {seg: data.ends(seg, T) for seg in ("train", "val", "test")}
    binary = data.cfg.task == "classification" and data.cfg.n_classes == 2
    preds: dict[str, Predictor] = {model_name: model}
    if data.cfg.task == "regression" or binary:
        for name, fn in baselines(data, ends["train"], ends["val"], tree=tree).items():
            preds[name] = _logits_of(fn) if binary else fn
    segments = [s for s in ("val", "test") if len(ends[s])]
    outputs = {seg: {n: fn(ends[seg]) for n, fn in preds.items()} for seg in segments}
    table = {
        seg: {n: _score(data, p, ends[seg], n) for n, p in outputs[seg].items()} for seg in segments
    }
    sign = 1.0 if _direction(select) == "maximize" else -1.0
    others = [n for n in preds if n not in (model_name, *REFERENCES)]
    result: dict[str, Any] = {"select": select, "columns": list(COLUMNS), **table}
    if len(preds) > 1 and (notes := missing_baselines(tree)):  # baselines apply, one missing
        result["notes"] = notes
    if not others:
        result["summary"] = "no baselines apply to this task (quantile classes)"
        return result

    def key(name: str) -> float:
        v = table["val"][name][select]
        return -math.inf if v is None else sign * v

    best = max(others, key=key)
    result["best_baseline"] = best
    if "test" not in table:
        result["summary"] = f"best baseline on validation: {best}; no test segment to judge on"
        return result
    mv, bv = table["test"][model_name][select], table["test"][best][select]
    margin = None if mv is None or bv is None else sign * (mv - bv)
    seed_std = _std(member_test) if member_test and len(member_test) > 1 else None
    paired_se = None
    if select in ("rank_ic", "ic") and data.n_securities > 1:
        e = ends["test"]
        d = e // data.n_securities
        y = data.target[d, e % data.n_securities]
        if data.cfg.task == "regression":
            a, b = outputs["test"][model_name], outputs["test"][best]
        else:
            a, b = outputs["test"][model_name][:, -1], outputs["test"][best][:, -1]
        diff = daily_rank_ic(a, y, d) - daily_rank_ic(b, y, d)
        diff = diff[torch.isfinite(diff)]
        if diff.numel() > 1:
            paired_se = float(diff.std() / math.sqrt(diff.numel()))
    noise = max(seed_std or 0.0, 2 * (paired_se or 0.0))
    beats = margin is not None and margin > noise
    result.update(margin=margin, seed_std=seed_std, paired_se=paired_se, beats=beats)
    result["summary"] = _summary(
        model_name, select, mv, best, bv, margin, seed_std, paired_se, beats
    )
    for ref in REFERENCES:
        if ref in table["test"] and mv is not None and table["test"][ref][select] is not None:
            rv = table["test"][ref][select]
            result["summary"] += f" Beside the {ref} tree ({_f(rv)}): {_f(sign * (mv - rv))}."
    return result


def _std(v: list[float]) -> float:
    mu = sum(v) / len(v)
    return math.sqrt(sum((x - mu) ** 2 for x in v) / (len(v) - 1))


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.4f}"


def _summary(
    model: str,
    select: str,
    mv: float | None,
    best: str,
    bv: float | None,
    margin: float | None,
    seed_std: float | None,
    paired_se: float | None,
    beats: bool,
) -> str:
    noise = []
    if seed_std is not None:
        noise.append(f"seed spread {seed_std:.4f}")
    else:
        noise.append("seed spread not measured (one seed)")
    if paired_se is not None:
        noise.append(f"2 x paired standard error {2 * paired_se:.4f}")
    head = (
        f"test {select}: {model} {_f(mv)} vs the best simple baseline on validation, {best}, "
        f"{_f(bv)}; "
        f"margin {_f(margin)} ({', '.join(noise)})"
    )
    if beats:
        return f"{head}: the model BEATS it by more than the noise."
    return f"{head}: the model does NOT beat it by more than the noise."


def format_verdict(v: dict[str, Any]) -> str:
    """The verdict as a fixed-width table per segment, and its summary line."""
    lines = []
    for seg in ("val", "test"):
        if seg not in v:
            continue
        rows = v[seg]
        width = max(len(n) for n in rows) + 2
        lines.append(
            f"{'validation' if seg == 'val' else 'test':<{width}}"
            + "".join(f"{HEADERS[c]:>10}" for c in COLUMNS)
        )
        for name, m in rows.items():
            mark = " *" if name == v.get("best_baseline") else ""
            lines.append(
                f"{name + mark:<{width}}"
                + "".join(f"{'n/a' if m[c] is None else format(m[c], '.4f'):>10}" for c in COLUMNS)
            )
        lines.append("")
    lines += v.get("notes", [])
    lines.append("* best simple baseline, chosen on validation. " + v["summary"])
    return "\n".join(lines)
