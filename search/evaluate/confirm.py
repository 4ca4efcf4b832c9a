"""`optuna-run confirm`: re-train the K best trials with fresh seeds, pick by the mean.

A search ranks trials on one seed (or a few) of noisy validation metrics. Confirming
re-trains each of the K best configurations under the same protocol with N new seeds
(seed, seed + 1, ... for every trial alike, so the comparison is paired by seed), records
the mean and spread of its value in the study (user attr `confirm`), and names the winner
by the mean, flagging a winner whose margin over the runner-up is inside their spread.
`export`, `train` and the run summary then use the confirmed winner.

The configurations the study queued first (`[[search.enqueue]]`) join the K best when they
completed: they were asked for by name. With `final`, each is trained at the final fit's
budget ([final]: every window, its epochs and learning-rate schedule) instead of the
search's: a search's small budget favours configurations that learn fast and stop early,
which is not what the final fit asks of them (bench/RESULTS.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import torch

from data import fingerprint
from search.evaluate.export import ExportError
from search.evaluate.progress import FitProgress, Say
from search.evaluate.retrain import (
    StudyContext,
    Trained,
    checkpoint,
    judge,
    reproduced,
    retrain,
    save,
)
from search.study.luck import record_luck
from search.study.objective import spread

DEFAULT_SEED = 20_240_601


def top_trials(ctx: StudyContext, k: int) -> list[optuna.trial.FrozenTrial]:
    """The K best COMPLETE trials by their (first) objective value."""
    done = [t for t in ctx.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise ExportError(f"study {ctx.study.study_name!r} has no COMPLETE trial to confirm")
    maximize = ctx.study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    return sorted(done, key=lambda t: t.values[0], reverse=maximize)[:k]


def queued_trials(ctx: StudyContext) -> list[optuna.trial.FrozenTrial]:
    """The first COMPLETE trial of each configuration the study queued ([[search.enqueue]]),
    found by its params."""
    done = [t for t in ctx.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    out: list[optuna.trial.FrozenTrial] = []
    for entry in ctx.run.search.enqueue:
        want = ctx.run.space.searched(entry)
        if not want:  # every param fixed by the space: nothing was queued
            continue
        hit = next((t for t in done if all(t.params.get(k) == v for k, v in want.items())), None)
        if hit is not None and hit not in out:
            out.append(hit)
    return out


def candidates(ctx: StudyContext, k: int) -> list[optuna.trial.FrozenTrial]:
    """The K best COMPLETE trials, then the queued ones not among them."""
    top = top_trials(ctx, k)
    chosen = {t.number for t in top}
    return top + [t for t in queued_trials(ctx) if t.number not in chosen]


def confirm(
    study: optuna.Study,
    device: torch.device,
    top: int,
    seeds: int,
    seed: int = DEFAULT_SEED,
    tree: bool = True,
    log: Any = None,
    progress: Say | None = None,
    final: bool = False,
    out: Path | None = None,
) -> dict[str, Any]:
    """Re-train the `top` best trials (and the queued ones) with `seeds` fresh seeds each,
    at the search's budget or, with `final`, at the final fit's; store and return the
    record (trials with mean, std and values; winner; flag; budget) and the winner's
    verdict. With `final` and `out`, the winner's networks are the final model: saved
    there as `train` saves its checkpoint (`record["model"]` says where). `log` takes a
    line per trial and step, `progress` a line per epoch."""
    if out is not None and not final:
        raise ValueError("confirm saves a model only at the final fit's budget (final=True)")
    ctx = StudyContext.of(study)
    cfg = ctx.data_config()
    panel, data = ctx.prepare(cfg, device, log)
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    trained: dict[int, Trained] = {}
    rows: dict[str, dict[str, Any]] = {}
    fits = FitProgress(progress, "confirm", ctx.objective)
    at = ctx.run.final if final else None
    n_best = len(top_trials(ctx, top))
    if n_best < top and log:  # said before the refits, not after them
        log(f"--top {top}: only {n_best} complete trial(s) to confirm; all of them confirmed")
    for t, on in fits.each(candidates(ctx, top)):
        r = retrain(
            ctx,
            t,
            data,
            seed=seed,
            n_seeds=seeds,
            final=at,
            on_epoch=on,
            on_step=None if on is None else on.step,
        )
        trained[t.number] = r
        per_seed = _per_seed(r.member_values, seeds)
        mean = sum(per_seed) / len(per_seed)
        rows[str(t.number)] = {
            "search_value": t.values[0],
            "mean": mean,
            "std": spread(per_seed),
            "values": per_seed,
        }
        if log:
            log(
                f"trial {t.number}: search {t.values[0]:.5g} -> confirmed {mean:.5g} "
                f"+- {spread(per_seed):.2g} over {seeds} seed(s)"
                + (" at the final fit's budget" if final else "")
            )
    order = sorted(rows, key=lambda n: rows[n]["mean"], reverse=maximize)
    for rank, n in enumerate(order):
        rows[n]["rank"] = rank
    winner = int(order[0])
    flag = ""
    if len(order) > 1:
        a, b = rows[order[0]], rows[order[1]]
        margin = abs(a["mean"] - b["mean"])
        noise = max(a["std"], b["std"])
        if margin <= noise:
            flag = (
                f"trial {winner}'s margin over trial {order[1]} ({margin:.3g}) is inside their "
                f"seed spread ({noise:.3g}): the two are not distinguishable"
            )
    record = {
        "trials": rows,
        "winner": winner,
        "flag": flag,
        "seeds": seeds,
        "seed": seed,
        "objective": ctx.objective.split(",")[0],
        "budget": "final" if final else "search",
    }
    study.set_user_attr("confirm", record)
    if log:
        log(f"confirm: scoring trial {winner} and the baselines on the validation and test dates")
    verdict, tree_text = judge(ctx, data, [trained[winner]], tree)
    mine = {**verdict, "trials": [winner], "source": "confirm"}
    mine |= {"fit": "final" if final else "search", "model": None if out is None else str(out)}
    held = study.user_attrs.get("verdict") or {}
    held_fit = held.get("fit") or ("final" if held.get("source") == "train" else None)
    if final or held_fit != "final":  # a final model's verdict stays the study's
        study.set_user_attr("verdict", mine)
    record["verdict"] = verdict
    if out is not None:
        best = trained[winner]
        fp = fingerprint(cfg)
        rep = reproduced(best, False, fp == ctx.spec.get("data_fingerprint"), seeds, ctx.seeds)
        ckpt = checkpoint(ctx, cfg, fp, panel, data, [best], verdict, ctx.run.final, rep, tree_text)
        save(ckpt, out)
        study.set_user_attr("confirm", {**study.user_attrs["confirm"], "model": str(out)})
        record["model"] = str(out)
        if log:
            log(f"confirm: saved trial {winner}'s networks as the final model at {out}")
    record["luck"] = record_luck(study)  # the confirmed winner is the selection now
    return record


def _per_seed(member_values: list[float], seeds: int) -> list[float]:
    """Each seed's value, averaged over the folds (members are fold-major)."""
    folds = len(member_values) // seeds
    out = []
    for j in range(seeds):
        v = [member_values[f * seeds + j] for f in range(folds)]
        out.append(sum(v) / len(v) if all(math.isfinite(x) for x in v) else math.nan)
    return out
