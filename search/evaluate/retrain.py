"""Fit a study's trial for good, save a checkpoint, predict with it.

`train` fits the trial's params at the final budget (`[final]`: its epochs, windows and
learning-rate schedule, `[final] seeds` networks from the trial's seed on) on the plain
train / validation split. `train --exact` reruns the trial's protocol instead: its params,
its stored seed (so the same members, initial weights and batch order), its folds, its
budget and the study's validation rows; on a CPU it reproduces the trial's value. The
checkpoint keeps the members of the final fold (the plain train / validation split), one per
seed, at their best epoch; `predict` averages them. With `--ensemble K` it holds K
configurations x their seeds.

A checkpoint holds only tensors and plain containers of strings and numbers, so it loads
with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from torch import nn

from data import ConfigError, DataConfig, DataError, Panel, Prepared, fingerprint, load_panel
from data.prepared import PanelTensors
from models import (
    Member,
    Step,
    average_prediction,
    fit,
    group,
    per_date_average,
    predict_members,
    to_floats,
    validate,
)
from search.config.schema import FinalConfig, RunConfig
from search.config.space import TrialParams
from search.evaluate.export import ExportError
from search.evaluate.progress import FitProgress, OnEpoch, Say
from search.study.notes import versions
from search.study.objective import (
    make_members,
    objective_values,
    selection_score,
    train_params,
    trial_members,
)
from search.study.progress import data_steps

FORMAT = "lstm-panel-search/2"
# the verdict's tree: its name there, and the column of its predictions in `predict`'s output
TREE_COLUMN = "lgbm"


def data_config(settings: dict[str, Any], path: str) -> DataConfig:
    """A checkpoint's or a study's stored data settings, on the file at `path`."""
    return DataConfig.stored({**settings, "path": path})


@dataclass
class StudyContext:
    """What a study stored about itself, to rebuild its data and protocol."""

    study: optuna.Study
    config: dict[str, Any]
    spec: dict[str, Any]
    run: RunConfig
    """The stored config read back (`RunConfig.from_dict` of the `config` user attr)."""

    @classmethod
    def of(cls, study: optuna.Study) -> StudyContext:
        config = study.user_attrs.get("config")
        spec = study.user_attrs.get("spec")
        if not config or not spec:
            raise ExportError(f"study {study.study_name!r} holds no config: not made by optuna-run")
        try:
            run = RunConfig.from_dict(config)
        except ConfigError as e:
            raise ExportError(
                f"study {study.study_name!r}: its stored config does not read back: {e}"
            ) from None
        return cls(study, config, spec, run)

    @property
    def objective(self) -> str:
        return str(self.spec.get("objective", "val_loss"))

    @property
    def seeds(self) -> int:
        """Networks per trial in the search (`[search] seeds`)."""
        return int(self.spec.get("seeds", 1))

    @property
    def multi(self) -> bool:
        return "," in self.objective

    def data_config(self, path: str | None = None) -> DataConfig:
        """The study's data settings, on its own file or on the one at `path`."""
        return replace(self.run.data, path=path) if path else self.run.data

    def prepare(
        self, cfg: DataConfig, device: torch.device, say: Say | None = None
    ) -> tuple[Panel, Prepared]:
        panel = load_panel(cfg, say=data_steps(cfg.file, say))
        eval_steps = int(self.run.space.max("time_steps"))
        return panel, Prepared(panel, cfg, device, eval_time_steps=eval_steps)

    def trial(self, number: int | None) -> optuna.trial.FrozenTrial:
        """Trial `number`; else the confirmed winner; else the best trial."""
        done = [t for t in self.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if number is not None:
            for t in done:
                if t.number == number:
                    return t
            raise ExportError(
                f"--trial {number}: no COMPLETE trial {number} in study {self.study.study_name!r}"
            )
        winner = (self.study.user_attrs.get("confirm") or {}).get("winner")
        if winner is not None:
            return self.trial(int(winner))
        if not done:
            raise ExportError(f"study {self.study.study_name!r} has no COMPLETE trial yet")
        if self.multi:
            front = [t.number for t in self.study.best_trials]
            raise ExportError(
                f"study {self.study.study_name!r} has several objectives ({self.objective}): "
                f"choose a trial of its Pareto front with --trial N, one of {front}"
            )
        return self.study.best_trial

    def ranked(self, k: int) -> list[optuna.trial.FrozenTrial]:
        """The K best trials: confirmed ones by their confirmed mean, else by value."""
        confirmed = (self.study.user_attrs.get("confirm") or {}).get("trials") or {}
        if confirmed:
            order = sorted(confirmed, key=lambda n: confirmed[n]["rank"])
            return [self.trial(int(n)) for n in order[:k]]
        if self.multi:
            raise ExportError("--ensemble needs a single-objective study or a confirmed one")
        done = [t for t in self.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        rev = self.study.direction == optuna.study.StudyDirection.MAXIMIZE
        return sorted(done, key=lambda t: t.value or 0.0, reverse=rev)[:k]


@dataclass
class Trained:
    """One configuration retrained: its final-fold networks and what the run measured."""

    trial: optuna.trial.FrozenTrial
    params: dict[str, Any]
    seed: int
    nets: list[nn.Module]  # final fold's members, one per seed, at the best epoch
    value: list[float]  # the objective(s) at the best epoch, members' mean
    best_epoch: int
    member_values: list[float]  # first objective per member at the best epoch


def full_params(ctx: StudyContext, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {**ctx.run.space.fixed_values(), **trial.params}


def retrain(
    ctx: StudyContext,
    trial: optuna.trial.FrozenTrial,
    data: Prepared,
    seed: int | None = None,
    n_seeds: int | None = None,
    final: FinalConfig | None = None,
    on_epoch: OnEpoch | None = None,
    on_step: Callable[[Step], None] | None = None,
) -> Trained:
    """Train `trial`'s configuration: under the study's protocol (its own seed by default,
    its folds and budget: a reproduction), or, given `final`, at the final budget on the
    plain train / validation split (`final.seeds` networks from the trial's seed on).
    `on_epoch` sees every epoch and `on_step` every batch (progress lines)."""
    params = full_params(ctx, trial)
    p = TrialParams(**params)
    if seed is None:
        if "seed" not in trial.user_attrs:
            raise ExportError(f"trial {trial.number} stored no seed: pass --seed")
        seed = int(trial.user_attrs["seed"])
    budget = ctx.run.budget
    if budget.precision == "fp16" and data.device.type != "cuda":
        # a study searched in float16 on a GPU, retrained on a CPU: float32
        budget = replace(budget, precision="fp32")
    if final is None:
        seeds = n_seeds or ctx.seeds
        members = trial_members(seed, seeds, data.n_folds)
    else:
        seeds = n_seeds or final.seeds
        members = [Member(-1, seed + j) for j in range(seeds)]
        p = replace(p, epochs=final.epochs)
        budget = replace(
            budget,
            max_windows_per_epoch=final.max_windows_per_epoch,
            patience=final.patience,
            val_dates=final.val_dates,
            val_windows=final.val_windows,
        )
    tp = train_params(p, budget, seed)
    if final is not None:
        tp = replace(tp, lr_schedule=final.lr_schedule)
    model = make_members(p, data, members)
    result = fit(
        model,
        data,
        tp,
        on_epoch=on_epoch,
        on_step=on_step,
        keep_best=True,
        members=members,
        score=selection_score(ctx.objective),
    )
    assert result.best_state is not None
    model.load_state_dict(result.best_state)
    best = result.best
    first = ctx.objective.split(",")[0].strip()
    per_member = [objective_values(first, m)[0] for m in best.members]
    nets = model.to_nets()[-seeds:]  # type: ignore[operator]
    return Trained(
        trial=trial,
        params={**params, "epochs": p.epochs},
        seed=seed,
        nets=nets,
        value=objective_values(ctx.objective, best.val),
        best_epoch=best.epoch,
        member_values=per_member,
    )


def _arch(params: dict[str, Any], data: Prepared) -> dict[str, Any]:
    cfg = data.cfg
    return {
        "name": str(params["model"]),
        "n_features": data.n_features,
        "n_outputs": cfg.n_classes if cfg.task == "classification" else 1,
        "hidden_dim": int(params["hidden_dim"]),
        "num_layers": int(params["num_layers"]),
        "dropout": float(params["dropout"]),
        "head_dim": int(params["head_dim"]),
        "time_steps": int(params["time_steps"]),
        "input_bins": int(params.get("input_bins", 0)),
    }


class EnsemblePredictor:
    """Average of several configurations' members: each gathers its own time_steps."""

    def __init__(self, data: PanelTensors, groups: list[tuple[int, list[nn.Module]]]) -> None:
        self.data = data
        self.groups = [(T, group(nets, grouped=False).to(data.device)) for T, nets in groups]
        self.n_outputs = int(getattr(groups[0][1][0], "n_outputs", 1))

    def on(self, data: PanelTensors) -> EnsemblePredictor:
        """The same networks predicting from `data` (on the same device)."""
        other = copy.copy(self)
        other.data = data
        return other

    def member_outputs(self, ends: torch.Tensor) -> list[torch.Tensor]:
        """(M_g, N[, C]) outputs of every group's members (the final fold's scaler)."""
        outs = []
        for T, model in self.groups:
            M = int(getattr(model, "n_members", 1))
            folds = torch.full((M,), -1, device=self.data.device)
            e = ends[None].expand(M, -1)
            outs.append(predict_members(model, self.data, e, folds, T, 8192))
        return outs

    def __call__(self, ends: torch.Tensor) -> torch.Tensor:
        """The members' average; a regression's on a common scale (each member's per-date
        z-scores averaged, then put back on the members' mean per-date location and spread),
        so every network weighs alike whatever the scale of its outputs. One member, or one
        security, is averaged as it is."""
        out = torch.cat(self.member_outputs(ends))
        S = self.data.n_securities
        if self.n_outputs == 1 and out.shape[0] > 1 and S > 1:
            return per_date_average(out, ends // S)
        return average_prediction(out, self.n_outputs)

    def as_predicted(self, runs: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The predictions `predict` writes for `ends`, given the panel's (D, S) run lengths
        of valid dates (`as_written`): the per-date average of several networks depends on
        the date's rows, and the verdict scores fewer of them (windows of the study's longest
        time_steps, with a label): so it scores what `predict` writes."""
        if self.n_outputs != 1:
            return self  # no per-date average: a row's value is its own
        T = max(t for t, _ in self.groups)
        return as_written(self, runs, T, self.data.n_securities)


def as_written(
    fn: Callable[[torch.Tensor], torch.Tensor], runs: torch.Tensor, time_steps: int, S: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`fn`, a prediction whose value on a row depends on the other rows of its date (a
    per-date average, a per-date rank blend), as `predict` writes it for `ends`: taken over
    every window of `time_steps` valid dates ending on each date of `ends` (`runs`: the
    panel's (D, S) run lengths of valid dates), labelled or not (the rows `predict` and the
    streaming predictor score that date), then the rows of `ends`."""
    full_rows = runs >= time_steps

    def predict(ends: torch.Tensor) -> torch.Tensor:
        if S == 1 or len(ends) == 0:
            return fn(ends)  # one series: no date has other rows
        dates = torch.unique(ends // S)
        d, s = torch.nonzero(full_rows.to(ends.device)[dates], as_tuple=True)
        full = dates[d] * S + s  # sorted as `ends` are: by date, then security
        at = torch.searchsorted(full, ends).clamp_max(len(full) - 1)
        if not bool((full[at] == ends).all()):  # a row shorter than time_steps: cannot happen
            raise ValueError("as_written: a row without the model's time_steps")
        return fn(full)[at]

    return predict


def train_best(
    study: optuna.Study,
    out: Path,
    device: torch.device,
    data_path: str | None = None,
    seed: int | None = None,
    trial_number: int | None = None,
    ensemble: int = 1,
    tree: bool = True,
    n_seeds: int | None = None,
    exact: bool = False,
    log: Say | None = None,
    progress: Say | None = None,
) -> dict[str, Any]:
    """Fit the chosen trial (or the K best) at the study's final budget ([final]), or with
    `exact` reproduce it at the search's budget; save the checkpoint, judge it. `log` takes
    a line per step, `progress` a line per epoch."""
    ctx = StudyContext.of(study)
    cfg = ctx.data_config(data_path)
    panel, data = ctx.prepare(cfg, device, log)
    fp = fingerprint(cfg)  # hashes the whole file: once
    same_data = fp == ctx.spec.get("data_fingerprint")
    trials = ctx.ranked(ensemble) if ensemble > 1 else [ctx.trial(trial_number)]
    steps = [int(full_params(ctx, t)["time_steps"]) for t in trials]
    check_windows(data, max([data.eval_time_steps, *steps]))
    final = None if exact else ctx.run.final
    fits = FitProgress(progress, "train", ctx.objective)
    trained = [
        retrain(ctx, t, data, seed, n_seeds, final, on, None if on is None else on.step)
        for t, on in fits.each(trials)
    ]
    if log:
        log("train: scoring the model and the baselines on the validation and test dates")
    verdict, tree_text = judge(ctx, data, trained, tree)
    rep = trained[0]
    repro = reproduced(rep, exact, same_data, n_seeds, ctx.seeds)
    ckpt = checkpoint(ctx, cfg, fp, panel, data, trained, verdict, final, repro, tree_text)
    if same_data:  # `--exact` checks a trial: its verdict beside the final model's, not over it
        record = {**verdict, "trials": ckpt["trial_numbers"], "source": "train"}
        record |= {"fit": "exact" if exact else "final", "model": str(out)}
        study.set_user_attr(EXACT_VERDICT if exact else "verdict", record)
    save(ckpt, out)
    return ckpt


# the study attr of `train --exact`'s verdict (the study's `verdict` is the final model's)
EXACT_VERDICT = "verdict_exact"


def checkpoint(
    ctx: StudyContext,
    cfg: DataConfig,
    fp: str,
    panel: Panel,
    data: Prepared,
    trained: list[Trained],
    verdict: dict[str, Any],
    final: FinalConfig | None,
    repro: dict[str, Any],
    tree: str | None = None,
) -> dict[str, Any]:
    """The checkpoint of retrained configuration(s) on data `cfg` (fingerprint `fp`): weights,
    data settings, scaler, verdict and where they came from (`final` None: an exact
    reproduction at the search's budget); `tree`: the verdict's tree as text (`judge`), for
    `predict`'s lgbm and blend columns."""
    rep = trained[0]
    out = {
        "format": FORMAT,
        "models": [_model_record(t, data) for t in trained],
        "data": {**cfg.settings(), "path": cfg.path},
        "eval_time_steps": data.eval_time_steps,
        "feature_names": list(panel.feature_names),
        # securities on a thin training date (the 5th percentile over the training dates),
        # for predict to say when a date it ranks features over holds far fewer (a per-date
        # normalisation then means other things); a growing universe's early dates pass
        "cross_section": _cross_section(panel, data.split.train),
        "scaler": data.scaler.record(),
        "metrics": {seg: verdict[seg]["model"] for seg in ("val", "test") if seg in verdict},
        "verdict": verdict,
        "reproduced": repro,
        "fit": "final" if final is not None else "exact",
        "final": None if final is None else asdict(final),
        "objective": ctx.objective,
        "study_name": ctx.study.study_name,
        "trial_number": rep.trial.number,
        "trial_numbers": [t.trial.number for t in trained],
        "best_epoch": rep.best_epoch,
        "data_fingerprint": fp,
        "same_data_as_study": fp == ctx.spec.get("data_fingerprint"),
        "versions": versions(),
    }
    if tree is not None:
        out["tree"] = {"name": TREE_COLUMN, "model": tree}
    return out


def _cross_section(panel: Panel, train: range) -> int:
    """The 5th percentile over the training dates of their valid securities."""
    counts = panel.valid[train.start : train.stop].sum(1)
    return int(np.percentile(counts, 5)) if len(counts) else 0


def save(ckpt: dict[str, Any], out: Path) -> None:
    """Write a checkpoint atomically (a reader never sees half a file)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save(ckpt, tmp)
    tmp.replace(out)


def reproduced(
    rep: Trained, exact: bool, same_data: bool, n_seeds: int | None, study_seeds: int
) -> dict[str, Any]:
    """Whether the fit reproduced its trial's value (only an exact one on the same data and
    seeds can), and what differs."""
    stored = list(rep.trial.values)
    same_seeds = n_seeds is None or n_seeds == study_seeds
    return {
        "trial_value": stored,
        "retrained_value": rep.value,
        "seed": rep.seed,
        "same_seed": rep.seed == rep.trial.user_attrs.get("seed"),
        "same_seeds": same_seeds,
        "study_seeds": study_seeds,
        "fit": "exact" if exact else "final",
        "match": exact
        and same_data
        and same_seeds
        and all(
            math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)
            for a, b in zip(stored, rep.value, strict=True)
        ),
    }


def _model_record(t: Trained, data: Prepared) -> dict[str, Any]:
    """One configuration of a checkpoint: its architecture, params and networks' weights."""
    return {
        "arch": _arch(t.params, data),
        "params": t.params,
        "trial_number": t.trial.number,
        "seed": t.seed,
        "best_epoch": t.best_epoch,
        "states": [{k: v.detach().cpu() for k, v in n.state_dict().items()} for n in t.nets],
    }


def check_windows(data: Prepared, time_steps: int) -> None:
    """Refuse data too short to train on: every fold's training and validation segments need
    a window of `time_steps` consecutive valid dates (the longest the study's protocol asks,
    its validation rows included) for some security."""
    short = data.segment_without_window(time_steps)
    if short is not None:
        which, n = short
        raise DataError(
            f"{data.panel.source}: too few dates to train on (--data / [data] path): "
            f"the {which} segment has {n} of the file's {len(data.panel.dates)} dates and no "
            f"security has {time_steps} consecutive valid dates (time_steps) ending in "
            "it; use a file with more dates"
        )


def judge(
    ctx: StudyContext, data: Prepared, trained: list[Trained], tree: bool = True
) -> tuple[dict[str, Any], str | None]:
    """The verdict of the retrained configuration(s), averaged over their seeds, against the
    baselines; the seed spread comes from each seed's own test value (one configuration).
    With it, the verdict's tree as text, kept for `predict` where it is fitted and the
    model's 50/50 blend with it has a meaning (a regression on a panel); else None."""
    from models.baselines import TreePredictor
    from models.metrics import OBJECTIVES
    from search.evaluate.verdict import build_verdict

    predictor = EnsemblePredictor(data, [(int(t.params["time_steps"]), t.nets) for t in trained])
    first = OBJECTIVES[ctx.objective.split(",")[0].strip()][0]
    metric = _verdict_metric(first, data.cfg.task)
    member_test: list[float] = []
    if len(trained) == 1 and len(trained[0].nets) > 1 and data.count("test", 1):
        t = trained[0]
        tp = train_params(TrialParams(**t.params), ctx.run.budget, t.seed)
        members = [Member(-1, t.seed + j) for j in range(len(t.nets))]
        per = to_floats(validate(group(t.nets, False), data, "test", tp, members))
        member_test = [v for m in per if math.isfinite(v := m.get(metric, math.nan))]
    runs = torch.as_tensor(data.windows.runs)
    model = predictor.as_predicted(runs)
    T, S = max(int(t.params["time_steps"]) for t in trained), data.n_securities
    fitted: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    verdict = build_verdict(
        data,
        model,
        member_test,
        select=metric,
        tree=tree,
        fitted=fitted,
        written=lambda fn: as_written(fn, runs, T, S),
    )
    kept = fitted.get(TREE_COLUMN)
    panel_regression = data.cfg.task == "regression" and S > 1
    text = kept.text() if isinstance(kept, TreePredictor) and panel_regression else None
    return verdict, text


def _verdict_metric(metric: str, task: str = "regression") -> str:
    """The verdict compares on the study's metric when it is one of its columns; a
    regression study that minimises the loss or maximises the MSE skill (a regression's
    loss is its MSE) on MSE; any other (a classifier's loss is its cross-entropy, which the
    verdict does not score) on rank IC."""
    from search.evaluate.verdict import COLUMNS

    if metric in ("loss", "mse_skill") and task == "regression":
        return "mse"
    return metric if metric in COLUMNS else "rank_ic"
