"""The verdict: the model beside the baselines on exactly the same validation and test rows.

The best baseline is chosen on the validation dates, never on test. On test, the model
beats it when its margin exceeds both the spread of the model's metric over seeds and two
standard errors of the paired per-date difference (models.luck.influence: the daily values
of a mean over dates, their delta-method influence for a ratio such as the Sharpe; for a
single series each date's term of the correlation), with horizon - 1 lags of
autocovariance (metrics.mean_se) where consecutive dates' forward returns overlap. Without
a per-date noise the verdict judges no margin: the seed spread alone leaves out the test
dates' own noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from data import Prepared
from models import OBJECTIVES, evaluate
from models.baselines import baselines, missing_baselines
from models.metrics import daily_rank_ic, mean_se

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
NOT_JUDGED = "the metric has no per-date form to measure the test dates' noise by"


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
        se_lag=data.cfg.horizon - 1,
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
    fitted: dict[str, Predictor] | None = None,
    written: Callable[[Predictor], Predictor] | None = None,
) -> dict[str, Any]:
    """Score the model and every baseline on the validation and test windows; decide.

    `model` maps end points to predictions (the ensemble of the final seeds);
    `member_test`: each seed's own test value of `select`, for the seed spread;
    `fitted`, when given, receives every predictor by name (the tree among them);
    `written` turns a prediction whose rows depend on their date's others into the values
    `predict` writes (retrain.as_written): the 50/50 blend with the tree is scored so.
    """
    T = data.eval_time_steps
    ends = {seg: data.ends(seg, T) for seg in ("train", "val", "test")}
    binary = data.cfg.task == "classification" and data.cfg.n_classes == 2
    preds: dict[str, Predictor] = {model_name: model}
    if data.cfg.task == "regression" or binary:
        for name, fn in baselines(data, ends["train"], ends["val"], tree, select).items():
            preds[name] = _logits_of(fn) if binary else fn
    if fitted is not None:
        fitted.update(preds)
    segments = [s for s in ("val", "test") if len(ends[s])]
    outputs = {seg: {n: fn(ends[seg]) for n, fn in preds.items()} for seg in segments}
    table = {
        seg: {n: _score(data, p, ends[seg], n) for n, p in outputs[seg].items()} for seg in segments
    }
    sign = 1.0 if _direction(select) == "maximize" else -1.0
    others = [n for n in preds if n not in (model_name, *REFERENCES)]
    result: dict[str, Any] = {"select": select, "columns": list(COLUMNS), **table}
    if "test" in outputs and data.n_securities > 1:
        result["daily"] = daily_values(data, outputs["test"], ends["test"])
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
    paired_se = _paired_se(data, select, outputs["test"], ends["test"], model_name, best)
    noise = max(seed_std or 0.0, 2 * (paired_se or 0.0))
    beats = paired_se is not None and margin is not None and margin > noise
    result.update(margin=margin, seed_std=seed_std, paired_se=paired_se, beats=beats)
    result["summary"] = _summary(
        model_name, select, mv, best, bv, margin, seed_std, paired_se, beats, noise
    )
    for ref in REFERENCES:
        if ref in table["test"] and mv is not None and table["test"][ref][select] is not None:
            rv = table["test"][ref][select]
            se = _paired_se(data, select, outputs["test"], ends["test"], model_name, ref)
            tree_margin = sign * (mv - rv)
            noise = max(seed_std or 0.0, 2 * (se or 0.0))
            result["tree"] = {"name": ref, "margin": tree_margin, "paired_se": se}
            result["tree"]["beats"] = se is not None and tree_margin > noise
            result["summary"] += " " + _beside_tree(
                ref, rv, tree_margin, seed_std, se, noise, select
            )
    if data.cfg.task == "regression" or binary:
        blended = None
        partner = next((r for r in REFERENCES if r in preds), None)
        if written is not None and partner and data.cfg.task == "regression":
            blended = written(tree_blend(preds[model_name], preds[partner], data.n_securities))
        result["next"] = next_questions(
            data,
            outputs["test"],
            ends["test"],
            model_name,
            best,
            fwd_return=raw_return(data),
            blended=None if blended is None else blended(ends["test"]),
        )
    return result


def tree_blend(model: Predictor, tree: Predictor, S: int) -> Predictor:
    """The 50/50 per-date rank blend of the model and the tree (models.portfolio.blend) on
    the rows given, each ranked among the rows of its date given with it."""
    from models.portfolio import blend

    def predict(ends: torch.Tensor) -> torch.Tensor:
        return blend(model(ends), tree(ends), date=ends // S).float()

    return predict


def _paired_se(
    data: Prepared,
    select: str,
    outputs: dict[str, torch.Tensor],
    ends: torch.Tensor,
    a: str,
    b: str,
) -> float | None:
    """Standard error of `a`'s minus `b`'s `select` on these windows, paired over their dates
    (metrics.mean_se with horizon - 1 lags, of the mean of the per-date difference of
    models.luck.influence; "zero", a constant, ranks nothing: 0 on every date for a
    correlation, a spread or a Sharpe): the noise of comparing two predictors on one period.
    None for a metric with no per-date form."""
    from models.luck import influence

    S = data.n_securities
    d, s = ends // S, ends % S
    y, w = data.target[d, s], None if data.weight is None else data.weight[d, s]
    per_date: dict[str, torch.Tensor | None] = {}
    for name in (a, b):
        if name == "zero" and select in NO_RANKING:
            continue  # a constant ranks nothing: 0 on every date the other is defined
        per_date[name] = influence(
            select,
            outputs[name],
            y,
            d,
            w,
            data.cfg.task,
            S > 1,
            periods_per_year=252 / data.cfg.horizon,
        )
    got = {n: v for n, v in per_date.items() if v is not None}
    if len(got) != len(per_date) or not got:
        return None
    like = next(iter(got.values()))
    va, vb = (got.get(n, torch.zeros_like(like)) for n in (a, b))
    se = float(mean_se(va - vb, data.cfg.horizon - 1))
    return se if math.isfinite(se) else None


def _beside_tree(
    ref: str,
    rv: float,
    margin: float,
    seed_std: float | None,
    se: float | None,
    noise: float,
    select: str = "",
) -> str:
    """The model against the tree, with the same noise as against the best baseline."""
    parts = [] if seed_std is None else [f"seed spread {_cell(seed_std, select)}"]
    if se is not None:
        parts.append(f"2 x paired standard error {_cell(2 * se, select)}")
    head = f"Beside the {ref} tree ({_f(rv, select)}): {_f(margin, select)}" + (
        f" ({', '.join(parts)})" if parts else ""
    )
    if se is None:
        return head + f": not judged ({NOT_JUDGED})."
    if margin > noise:
        return head + f": ABOVE the {ref} tree by more than the noise."
    if margin < -noise:
        return head + f": BELOW the {ref} tree by more than the noise."
    return head + f": level with the {ref} tree within the noise."


def daily_values(
    data: Prepared, outputs: dict[str, torch.Tensor], ends: torch.Tensor
) -> dict[str, Any]:
    """Each predictor's rank IC on each of the windows' dates (None on a date with fewer
    than 5 securities), for the report's cumulative rank IC; "zero", a constant, ranks
    nothing and is left out. JSON-ready: 6 decimals."""
    from models.luck import class_score

    S = data.n_securities
    d = ends // S
    y = data.target[d, ends % S].double()
    days = torch.unique(d).tolist()  # the order of daily_rank_ic's dates
    rank_ic = {}
    for name, pred in outputs.items():
        if name != "zero":
            v = daily_rank_ic(class_score(pred), y, d).tolist()
            rank_ic[name] = [round(x, 6) if math.isfinite(x) else None for x in v]
    return {"dates": [data.panel.date_str(int(x)) for x in days], "rank_ic": rank_ic}


def raw_return(data: Prepared) -> torch.Tensor | None:
    """The (D, S) untransformed target the portfolios earn, when the panel keeps it apart
    from a transformed one (None: the target is already untransformed)."""
    raw = data.panel.target_raw
    return None if raw is None else torch.as_tensor(raw).to(data.device)


def _std(v: list[float]) -> float:
    mu = sum(v) / len(v)
    return math.sqrt(sum((x - mu) ** 2 for x in v) / (len(v) - 1))


def _f(v: float | None, metric: str = "") -> str:
    """A signed value: four decimals, an MSE under 0.01 (of a raw return target, ~1e-4) in
    four significant digits."""
    return "n/a" if v is None else _cell(v, metric, "+")


def _cell(v: float | None, metric: str = "", sign: str = "", sci: bool | None = None) -> str:
    """A table cell: four decimals; an MSE under 0.01 (of a raw return target, ~1e-4, which
    four decimals show as 0.0000) in four significant digits (`sci`: the column's choice)."""
    if v is None:
        return "n/a"
    v = v + 0.0  # -0.0 (a margin of two equal values, negated) reads as 0
    if sci is None:
        sci = small_mse(metric, [v])
    return format(v, f"{sign}.3e" if sci else f"{sign}.4f")


def small_mse(metric: str, values: list[Any]) -> bool:
    """Whether a column of `metric` prints in significant digits: an MSE with any of its
    values under 0.01 (a raw return target's, which four decimals show as 0.0000)."""
    return metric == "mse" and any(isinstance(v, float) and 0 < abs(v) < 0.01 for v in values)


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
    threshold: float = 0.0,
) -> str:
    noise = []
    if seed_std is not None:
        noise.append(f"seed spread {_cell(seed_std, select)}")
    else:
        noise.append("seed spread not measured")
    if paired_se is not None:
        noise.append(f"2 x paired standard error {_cell(2 * paired_se, select)}")
    head = (
        f"test {select}: {model} {_f(mv, select)} vs the best simple baseline on validation, "
        f"{best}, {_f(bv, select)}; "
        f"margin {_f(margin, select)} ({', '.join(noise)})"
    )
    if margin is None:
        return f"{head}: not judged (no test value of {select} for one of the two)."
    if paired_se is None:
        return f"{head}: not judged ({NOT_JUDGED})."
    if beats:
        return f"{head}: the model BEATS it by more than the noise."
    if margin is not None and margin < -threshold:
        return f"{head}: the model is BELOW it by more than the noise."
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
        sci = {c: small_mse(c, [m[c] for m in rows.values()]) for c in COLUMNS}
        for name, m in rows.items():
            mark = " *" if name == v.get("best_baseline") else ""
            lines.append(
                f"{name + mark:<{width}}"
                + "".join(f"{_cell(m[c], c, sci=sci[c]):>10}" for c in COLUMNS)
            )
        lines.append("")
    lines += v.get("notes", [])
    lines.append("* best simple baseline, chosen on validation. " + v["summary"])
    if v.get("next"):
        lines.append(format_next_questions(v["next"]))
    return "\n".join(lines)


# --- the questions a quant asks next (models.portfolio) ---

COST_BPS = 10.0  # cost per unit of turnover of the long-short portfolios


def _rank_ic(score: torch.Tensor, y: torch.Tensor, d: torch.Tensor) -> float | None:
    v = daily_rank_ic(score, y, d)
    v = v[torch.isfinite(v)]
    return float(v.mean()) if v.numel() > 1 else None


def next_questions(
    data: Prepared,
    outputs: dict[str, torch.Tensor],
    ends: torch.Tensor,
    model_name: str,
    best: str,
    cost_bps: float = COST_BPS,
    fwd_return: torch.Tensor | None = None,
    blended: torch.Tensor | None = None,
) -> dict[str, Any]:
    """On the test windows `ends` (predictions `outputs` by name): how alike the model and
    the tree (else the best baseline) rank securities, whether their 50/50 per-date rank
    blend beats the tree (paired over dates), and the long-short decile portfolio
    (models.portfolio, rebalanced every horizon dates) of the model and the best baseline,
    before and after `cost_bps` per unit of turnover, earning `fwd_return` ((D, S) raw
    forward returns; default the target, which is a return only untransformed); `blended`:
    the blend as `predict` writes it (ranked among every row it writes on a date), else the
    blend ranked among `ends`' rows. JSON-ready."""
    from models.luck import class_score
    from models.portfolio import blend, decile_portfolio, prediction_correlation, summary

    S = data.n_securities
    if S < 2:
        return {"note": "a single series: no cross-section to rank or to hold"}
    partner = next((r for r in REFERENCES if r in outputs), best)
    d, s = ends // S, ends % S
    y = data.target[d, s].double()
    sc = {n: class_score(outputs[n]) for n in dict.fromkeys((model_name, partner, best))}
    mixed = blend(sc[model_name], sc[partner], date=d) if blended is None else blended.double()
    diff = daily_rank_ic(mixed, y, d) - daily_rank_ic(sc[partner], y, d)
    diff = diff[torch.isfinite(diff)]
    out: dict[str, Any] = {"partner": partner, "best_baseline": best, "cost_bps": cost_bps}
    corr = float(prediction_correlation(sc[model_name], sc[partner], d))
    out["correlation"] = corr if math.isfinite(corr) else None
    out["rank_ic"] = {n: _rank_ic(v, y, d) for n, v in sc.items()}
    out["rank_ic"]["blend"] = _rank_ic(mixed, y, d)
    out["blend_margin"] = float(diff.mean()) if diff.numel() else None
    blend_se = float(mean_se(diff, data.cfg.horizon - 1))
    out["blend_paired_se"] = blend_se if math.isfinite(blend_se) else None
    out["blend_written"] = blended is not None  # predict's column blend (the tree kept)
    if data.cfg.task != "regression" and fwd_return is None:
        out["portfolios"] = None
        out["note"] = "no portfolio: the target is a class, not a forward return"
        return out
    n_dates, h = data.target.shape[0], data.cfg.horizon
    r = y if fwd_return is None else fwd_return[d, s].double()
    c = data.cfg
    if fwd_return is None and (c.target_cs != "none" or c.target_winsor or c.target_scale != 1):
        out["note"] = (
            f"the portfolios earn the transformed target ([data] target_cs {c.target_cs!r}, "
            f"target_winsor {c.target_winsor:g}, target_scale {c.target_scale:g}), not returns"
        )
    out["portfolios"] = {
        n: summary(decile_portfolio(sc[n], r, d, s, n_dates, S, cost_bps, horizon=h))
        for n in dict.fromkeys((model_name, best))
    }
    return out


def format_next_questions(q: dict[str, Any], model_name: str = "model") -> str:
    """The correlation, the blend and the portfolios as a few lines."""
    if "partner" not in q:
        return q.get("note", "")
    partner, ric = q["partner"], q["rank_ic"]
    se = q.get("blend_paired_se")
    adds = q["blend_margin"] is not None and se is not None and q["blend_margin"] > 2 * se
    if q["correlation"] is None and ric.get(model_name) is None and ric.get(partner) is None:
        lines = [  # every figure of the line n/a: said once
            f"rank correlation with {partner}, test rank ICs and their 50/50 blend: n/a (no "
            "test date has the 5 securities a per-date rank needs)"
        ]
    else:
        lines = [
            f"rank correlation of {model_name} with {partner}: {_f(q['correlation'])}; "
            f"test rank IC {model_name} {_f(ric.get(model_name))}, {partner} {_f(ric.get(partner))}, "
            f"50/50 rank blend {_f(ric.get('blend'))}: the blend {'ADDS' if adds else 'does not add'} "
            f"to {partner} by more than 2 paired standard errors ({_f(q['blend_margin'])}, "
            f"se {'n/a' if se is None else format(se, '.4f')})"
            + (
                "; a saved model's predict writes it (column blend)"
                if q.get("blend_written")
                else ""
            )
        ]
    for name, p in (q.get("portfolios") or {}).items():
        if not p["turnover"] and not p["cumulative"]:  # no date had rows enough to hold
            lines.append(
                f"long-short decile portfolio of {name}: none held (no test date has 5 "
                "securities whose predictions split into a long and a short leg)"
            )
            continue
        lines.append(
            f"long-short decile portfolio of {name}, rebalanced every {p['horizon']} dates: "
            f"cumulative {_f(p['cumulative'])}, turnover {p['turnover']:.2f} per rebalance, "
            f"Sharpe {_f(p['sharpe'])}, after {p['cost_bps']:g} bps {_f(p['sharpe_after_cost'])}"
        )
    if q.get("note"):
        lines.append(q["note"])
    return "\n".join(lines)
