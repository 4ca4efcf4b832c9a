"""The objective: params from the trial -> model -> training, reporting the validation loss
every epoch so the pruner can stop weak trials."""

from __future__ import annotations

import gc
import math
import secrets
import time
from collections.abc import Callable
from typing import Any

import optuna
import torch

from data import DataError, Prepared
from data.errors import SegmentError
from models import (
    EpochResult,
    FitResult,
    Interrupted,
    Member,
    NonFiniteLoss,
    Report,
    TrainParams,
    build_model,
    fit,
)
from models.ensemble import group
from models.luck import trial_daily
from models.metrics import OBJECTIVES, PER_DATE, WEIGHTED
from search.config.schema import BudgetConfig, RunConfig
from search.config.space import TrialParams
from search.storage.common import StudyStorage
from search.study.create import queued_params


def train_params(p: TrialParams, b: BudgetConfig, seed: int | None) -> TrainParams:
    return TrainParams(
        time_steps=p.time_steps,
        epochs=p.epochs,
        batch_size=p.batch_size,
        lr=p.lr,
        weight_decay=p.weight_decay,
        optimizer=p.optimizer,
        grad_clip=p.grad_clip,
        max_windows_per_epoch=b.max_windows_per_epoch,
        eval_batch_size=b.eval_batch_size,
        patience=b.patience,
        val_dates=b.val_dates,
        val_windows=b.val_windows,
        precision=b.precision,
        report_every=b.report_every,
        seed=seed,
    )


def make_model(p: TrialParams, data: Prepared) -> torch.nn.Module:
    n_out = data.cfg.n_classes if data.cfg.task == "classification" else 1
    return build_model(
        p.model,
        n_features=data.n_features,
        n_outputs=n_out,
        hidden_dim=p.hidden_dim,
        num_layers=p.num_layers,
        dropout=p.dropout,
        head_dim=p.head_dim,
        time_steps=p.time_steps,
        input_bins=p.input_bins,
    )


def trial_members(seed: int, n_seeds: int, n_folds: int) -> list[Member]:
    """Every (fold, seed) model of a trial: seeds seed .. seed + n_seeds - 1 on each fold."""
    return [Member(f, seed + j) for f in range(n_folds) for j in range(n_seeds)]


def make_members(p: TrialParams, data: Prepared, members: list[Member]) -> torch.nn.Module:
    """One network per member, each initialised under its own seed, as one module. The
    members run one after another: cuDNN / oneDNN per member measured faster than the
    grouped network (models.GroupedRecurrent) on an H100 and on a CPU (bench/gpu.py)."""
    nets = []
    for m in members:
        torch.manual_seed(m.seed)
        nets.append(make_model(p, data))
    return group(nets, grouped=False)


def selection_score(objective: str) -> Callable[[dict[str, float]], float]:
    """The minimised score that picks a trial's best epoch: its first objective."""
    key, direction = OBJECTIVES[objective.split(",")[0].strip()]
    sign = 1.0 if direction == "minimize" else -1.0

    def score(v: dict[str, float]) -> float:
        x = v.get(key, math.nan)
        return sign * x if math.isfinite(x) else math.inf

    return score


def objective_values(objective: str, v: dict[str, float]) -> list[float]:
    """The values of the objectives named in `objective` ("rank_ic" or "rank_ic,val_loss")."""
    return [v.get(OBJECTIVES[o.strip()][0], math.nan) for o in objective.split(",")]


def spread(values: list[float]) -> float:
    """Sample standard deviation (0 for one value)."""
    n = len(values)
    if n < 2:
        return 0.0
    mu = sum(values) / n
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (n - 1))


OOM_MARKERS = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")


def is_out_of_memory(e: BaseException) -> bool:
    """torch's OutOfMemoryError, or a RuntimeError from a CUDA library that ran out."""
    if isinstance(e, torch.OutOfMemoryError):
        return True
    msg = str(e)
    return isinstance(e, RuntimeError) and any(m in msg for m in OOM_MARKERS)


def queued_trial(trial: optuna.Trial, cfg: RunConfig) -> bool:
    """Whether `trial` was queued as a configuration of [[search.enqueue]]."""
    fixed = trial.storage.get_trial(trial._trial_id).system_attrs.get("fixed_params")
    return bool(fixed) and fixed in queued_params(cfg)


class Objective:
    """Callable for `study.optimize`. Shares one Prepared panel across all its trials.

    A trial trains `[search] seeds` models on each of the `[data] folds` folds, together;
    after every epoch it reports the members' mean of the first objective to the pruner
    (never pruning in the last epoch, nor a configuration of [[search.enqueue]]), and its
    value is that mean at its best epoch. With `[budget] report_every` it also reports
    inside epochs, and the step is the windows trained per network instead of the epoch.
    Its seed is stored (user attr `seed`), so `optuna-run train` reproduces it.
    """

    def __init__(
        self,
        cfg: RunConfig,
        data: Prepared,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.cfg = cfg
        self.data = data
        self.should_stop = should_stop
        self._frozen = False

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        if self.should_stop():
            trial.set_user_attr("fail_reason", "interrupted before training")
            raise Interrupted("stop requested")
        cfg = self.cfg
        p = cfg.space.suggest(trial)
        # a configuration of [[search.enqueue]] is never pruned: the search holds it at its
        # whole budget, whatever trials ran beside or before it (a resumed or parallel run).
        # It is the trial queued with those params (Optuna's fixed_params, which a stale
        # trial's retry keeps), not any sampled trial that happens to share them.
        held = queued_trial(trial, cfg)
        base = cfg.search.seed
        # seeded: trial n's members take seeds n * k .. n * k + k - 1 past the base (k seeds a
        # trial), so no two trials share one
        k = cfg.search.seeds
        seed = secrets.randbelow(2**31) if base is None else base * 100_003 + trial.number * k
        trial.set_user_attr("seed", seed)
        members = trial_members(seed, cfg.search.seeds, self.data.n_folds)
        tp = train_params(p, cfg.budget, seed)
        progress: dict[str, Any] = {
            "epochs_run": 0,
            "best": None,
            "windows": 0,
            "fit_train": 0.0,
            "fit_val": 0.0,
            "partial": None,  # the epoch under way, as its last mid-epoch report counted it
        }
        start = time.perf_counter()
        score = selection_score(cfg.study.objective)
        key = cfg.study.metrics[0]
        by_windows = tp.report_every > 0  # the pruner's step: windows trained, else epochs

        def report(val: dict[str, float], step: int, last: bool, where: str) -> None:
            v = val.get(key, math.nan)
            if not math.isfinite(v):
                raise optuna.TrialPruned(f"{key} is not finite {where}")
            trial.report(v, step)
            # never in the last epoch: a trial that reached it trains its whole budget
            if not last and not held and trial.should_prune():
                raise optuna.TrialPruned(f"pruned {where} ({key} {v:.6g})")

        def on_report(r: Report) -> None:
            progress["partial"] = r
            where = f"after {r.done:,} windows (epoch {r.epoch - 1 + r.fraction:.2f})"
            report(r.val, r.done, r.epoch >= tp.epochs, where)

        def count_epoch(r: EpochResult) -> None:
            progress["partial"] = None  # the whole epoch counts, not its last report
            progress["epochs_run"] = r.epoch
            progress["windows"] += r.windows
            progress["fit_train"] += r.train_seconds
            progress["fit_val"] += r.val_seconds

        def on_epoch(r: EpochResult) -> None:
            count_epoch(r)
            if progress["best"] is None or score(r.val) < score(progress["best"].val):
                progress["best"] = r
            if not cfg.study.multi:
                step = r.done if by_windows else r.epoch
                report(r.val, step, r.epoch >= tp.epochs, f"at epoch {r.epoch}")

        model = None
        oom: str | None = None
        try:
            model = make_members(p, self.data, members)
            result = fit(
                model,
                self.data,
                tp,
                on_epoch=on_epoch,
                should_stop=self.should_stop,
                members=members,
                score=score,
                keep_best=True,  # for the per-date values of the best epoch
                on_report=None if cfg.study.multi else on_report,
            )
            best = progress["best"] = result.best  # every validation date scored
            progress["fit_val"] += result.final_seconds
            values = objective_values(cfg.study.objective, best.val)
            if not all(math.isfinite(v) for v in values):
                raise optuna.TrialPruned(f"objective not finite: {values}")
            self._keep_daily(model, result, tp, members, progress)
            return values if cfg.study.multi else values[0]
        except NonFiniteLoss as e:
            if e.epoch is not None:  # an epoch that ended non-finite was trained whole
                count_epoch(e.epoch)
            trial.set_user_attr("prune_reason", str(e))
            raise optuna.TrialPruned(str(e)) from None
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not is_out_of_memory(e):
                trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:500])
                raise
            # Keep only the message: the traceback holds the frames of `fit` (model,
            # optimizer state, a batch), which must be freed before the cache is emptied.
            oom = f"out of memory: {str(e).strip().splitlines()[0]}"[:500]
        except Interrupted:
            trial.set_user_attr("fail_reason", interrupted_reason(self.should_stop))
            raise
        except optuna.TrialPruned:
            raise
        except Exception as e:
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:500])
            raise
        finally:
            record_trial(trial, cfg, self.data, progress, time.perf_counter() - start, p, members)
            del model
            self._release()
        trial.set_user_attr("fail_reason", oom)
        raise torch.OutOfMemoryError(oom)

    def _keep_daily(
        self,
        model: torch.nn.Module,
        result: FitResult,
        tp: TrainParams,
        members: list[Member],
        progress: dict[str, Any],
    ) -> None:
        """The first objective's value on each validation date at the best epoch (the
        members' mean; models.luck.trial_daily), kept as user attr `daily_values` of a
        complete trial; its time counts as validation."""
        t0 = time.perf_counter()
        if result.best_state is not None:
            model.load_state_dict(result.best_state)
        progress["daily"] = trial_daily(model, self.data, tp, members, self.cfg.study.metrics[0])
        progress["fit_val"] += time.perf_counter() - t0

    def _release(self) -> None:
        """Free what the trial left (cycles, cached device blocks) before the next one.

        After the first trial, whatever is still alive (modules, lazily imported torch
        parts, the panel) is moved out of the collector's sight (gc.freeze), so each later
        collection walks only the objects of one trial: milliseconds, not a tenth of a
        second.
        """
        gc.collect()
        if not self._frozen:
            gc.freeze()
            self._frozen = True
        if self.data.device.type == "cuda":
            torch.cuda.empty_cache()


# validation metrics kept in a trial's user attrs (val_<name>)
KEPT_METRICS = (
    "loss",
    "mse",
    "mse_skill",
    "ic",
    "ic_se",
    "rank_ic",
    "rank_ic_se",
    "icir",
    "rank_icir",
    "spread",
    "sharpe",
    "hit_rate",
    "r2_weighted",
    "utility",
    "accuracy",
    "log_loss",
    "auc",
    "dates",
    "dates_skipped",
)


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """`trial.set_user_attr` for each item, as one storage write where the storage has a
    batch (the service's storages, StudyStorage.write_user_attrs; others get one write per
    key)."""
    if isinstance(trial.storage, StudyStorage):
        trial.storage.write_user_attrs(trial, attrs)
        return
    for k, v in attrs.items():
        trial.set_user_attr(k, v)


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def record_trial(
    trial: optuna.Trial,
    cfg: RunConfig,
    data: Prepared,
    progress: dict[str, Any],
    seconds: float,
    p: TrialParams,
    members: list[Member],
) -> None:
    """The trial's user attrs: metrics at its best epoch (members' mean), the objective per
    member, per fold and its spread over seeds, epochs, seconds, device, window counts;
    written at once (one transaction where the storage allows)."""
    attrs: dict[str, Any] = {}
    try:
        attrs["epochs_run"] = progress["epochs_run"]  # whole epochs
        part: Report | None = progress.get("partial")  # an epoch cut short by the pruner
        # with the share of the epoch a mid-epoch report cut short
        attrs["epochs_trained"] = round(progress["epochs_run"] + (part.fraction if part else 0), 3)
        attrs["train_seconds"] = round(seconds, 3)
        # of which training passes and validation (the rest: building the model, clean-up)
        fit_train = progress["fit_train"] + (part.train_seconds if part else 0.0)
        attrs["fit_train_seconds"] = round(fit_train, 3)
        attrs["fit_val_seconds"] = round(
            progress["fit_val"] + (part.val_seconds if part else 0.0), 3
        )
        attrs["windows_trained"] = progress["windows"] + (part.windows if part else 0)
        attrs["device"] = str(data.device)
        attrs["seeds"] = cfg.search.seeds
        attrs["folds"] = data.n_folds
        attrs["train_windows"] = data.count("train", p.time_steps)
        attrs["val_windows"] = data.count("val", p.time_steps)
        best: EpochResult | None = progress["best"]
        if best is None:
            return
        attrs["best_epoch"] = best.epoch
        # a weight column's metrics mean nothing without one (unless an objective names them)
        unweighted = [] if data.weight is not None else WEIGHTED
        for k in KEPT_METRICS:
            if k in best.val and (k not in unweighted or k in cfg.study.metrics):
                attrs[f"val_{k}"] = _finite(best.val[k])
        key = cfg.study.metrics[0]
        per = [m.get(key, math.nan) for m in best.members]
        attrs["member_values"] = [_finite(v) for v in per]
        n_seeds = cfg.search.seeds
        folds = [per[f * n_seeds : (f + 1) * n_seeds] for f in range(data.n_folds)]
        if data.n_folds > 1:
            attrs["fold_values"] = [_finite(sum(f) / len(f)) for f in folds]
        # spread over seeds: the standard deviation within each fold, averaged over folds
        attrs["seed_std"] = _finite(sum(spread(f) for f in folds) / len(folds))
        if progress.get("daily"):
            attrs["daily_values"] = progress["daily"]
    finally:
        set_user_attrs(trial, attrs)


def check_data(data: Prepared, cfg: RunConfig) -> None:
    """Refuse, before any trial, a panel too short for the longest `[space] time_steps` or
    too thin across securities for a per-date objective; the error names the setting."""
    steps = int(cfg.space.max("time_steps"))
    try:
        data.check_time_steps(steps)
    except SegmentError as e:
        raise DataError(f"{e}; lower [space] time_steps or use more dates") from None
    per_date = sorted(set(PER_DATE) & set(cfg.study.metrics))
    if not per_date:
        return
    try:
        data.check_cross_section()
    except SegmentError as e:
        raise DataError(
            f"{e.source}: --objective / [study] objective {per_date} is computed per date "
            f"across securities, but {e.facts}; use --objective val_loss (or mse) on so few "
            "securities"
        ) from None


def interrupted_reason(stop: Callable[[], bool]) -> str:
    """A trial's fail_reason when its run was stopped: by a signal, or (SIGHUP, a worker's)
    by the end of the `optuna-run` that started the worker (killed: its trials cannot go on
    without it)."""
    if getattr(stop, "signal_name", "") == "SIGHUP":
        return "interrupted: the optuna-run that started this worker ended (killed?)"
    return "interrupted (SIGINT/SIGTERM)"
