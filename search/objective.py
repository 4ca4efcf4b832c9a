"""The objective: params from the trial -> model -> training, reporting the validation loss
every epoch so the pruner can stop weak trials."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from typing import Any

import optuna
import torch

from data import Prepared
from models import EpochResult, Interrupted, NonFiniteLoss, TrainParams, build_model, fit
from search.config import RunConfig
from search.space import TrialParams


def train_params(p: TrialParams, cfg: RunConfig, seed: int | None) -> TrainParams:
    b = cfg.budget
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
    )


OOM_MARKERS = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")


def is_out_of_memory(e: BaseException) -> bool:
    """torch's OutOfMemoryError, or a RuntimeError from a CUDA library that ran out."""
    if isinstance(e, torch.OutOfMemoryError):
        return True
    msg = str(e)
    return isinstance(e, RuntimeError) and any(m in msg for m in OOM_MARKERS)


class Objective:
    """Callable for `study.optimize`. Shares one Prepared panel across all its trials."""

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

    def __call__(self, trial: optuna.Trial) -> float:
        if self.should_stop():
            trial.set_user_attr("fail_reason", "interrupted before training")
            raise Interrupted("stop requested")
        p = self.cfg.space.suggest(trial)
        seed = (
            None if self.cfg.search.seed is None else self.cfg.search.seed * 100_003 + trial.number
        )
        if seed is not None:
            torch.manual_seed(seed)
        tp = train_params(p, self.cfg, seed)
        progress: dict[str, Any] = {"epochs_run": 0, "best": math.inf, "best_epoch": 0, "val": {}}
        start = time.perf_counter()

        def on_epoch(r: EpochResult) -> None:
            progress["epochs_run"] = r.epoch
            if r.val_loss < progress["best"]:
                progress.update(best=r.val_loss, best_epoch=r.epoch, val=r.val)
            trial.report(r.val_loss, r.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {r.epoch} (val loss {r.val_loss:.6g})")

        model = None
        oom: str | None = None
        try:
            model = make_model(p, self.data)
            result = fit(model, self.data, tp, on_epoch=on_epoch, should_stop=self.should_stop)
            return result.best_val_loss
        except NonFiniteLoss as e:
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
            trial.set_user_attr("fail_reason", "interrupted (SIGINT/SIGTERM)")
            raise
        except optuna.TrialPruned:
            raise
        except Exception as e:
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:500])
            raise
        finally:
            self._record(trial, progress, time.perf_counter() - start, p)
            del model
            self._release()
        trial.set_user_attr("fail_reason", oom)
        raise torch.OutOfMemoryError(oom)

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

    def _record(
        self, trial: optuna.Trial, progress: dict[str, Any], seconds: float, p: TrialParams
    ) -> None:
        trial.set_user_attr("epochs_run", progress["epochs_run"])
        trial.set_user_attr("best_epoch", progress["best_epoch"])
        trial.set_user_attr("train_seconds", round(seconds, 3))
        trial.set_user_attr("device", str(self.data.device))
        for k, v in progress["val"].items():
            trial.set_user_attr(f"val_{k}", v if math.isfinite(v) else None)
        trial.set_user_attr("train_windows", self.data.count("train", p.time_steps))
        trial.set_user_attr("val_windows", self.data.count("val", p.time_steps))
