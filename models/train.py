"""Training loop: shuffled window batches gathered from the device panel, last-step loss,
gradient-norm clipping, validation after every epoch, one host sync per epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from data.prepared import Prepared
from models.metrics import evaluate, loss_fn


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss."""


class Interrupted(KeyboardInterrupt):
    """A stop was requested (SIGINT / SIGTERM) while a trial was training."""


@dataclass(frozen=True)
class TrainParams:
    time_steps: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    optimizer: str = "adam"
    grad_clip: float = 1.0
    max_windows_per_epoch: int = 0  # 0 = every training window each epoch
    eval_batch_size: int = 8192
    patience: int = 0  # 0 = no early stopping
    seed: int | None = None


@dataclass
class EpochResult:
    epoch: int  # 1-based: epochs trained so far
    train_loss: float
    val: dict[str, float]

    @property
    def val_loss(self) -> float:
        return self.val["loss"]


@dataclass
class FitResult:
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[EpochResult] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    stopped_early: bool = False


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda p, lr, wd: torch.optim.Adam(p, lr=lr, weight_decay=wd),
    "adamw": lambda p, lr, wd: torch.optim.AdamW(p, lr=lr, weight_decay=wd),
    "sgd": lambda p, lr, wd: torch.optim.SGD(p, lr=lr, weight_decay=wd, momentum=0.9),
    "rmsprop": lambda p, lr, wd: torch.optim.RMSprop(p, lr=lr, weight_decay=wd),
}


def make_optimizer(name: str, params: object, lr: float, wd: float) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names are {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr, wd)


# Elements (T x B x F) of one validation batch: bounds its memory on wide panels.
EVAL_BATCH_ELEMENTS = 1 << 24


@torch.inference_mode()
def predict(
    model: nn.Module, data: Prepared, ends: torch.Tensor, time_steps: int, batch_size: int
) -> torch.Tensor:
    """Predictions for the windows ending at `ends`, in batches of at most `batch_size`
    windows and EVAL_BATCH_ELEMENTS input values, written into one preallocated tensor."""
    model.eval()
    bs = max(1, min(batch_size, EVAL_BATCH_ELEMENTS // (time_steps * data.n_features)))
    n_out = getattr(model, "n_outputs", 1)
    shape = (len(ends),) if n_out == 1 else (len(ends), n_out)
    out = torch.empty(shape, device=data.device)
    for i in range(0, len(ends), bs):
        out[i : i + bs] = model(data.batch(ends[i : i + bs], time_steps).x)
    return out


def validate(
    model: nn.Module, data: Prepared, segment: str, p: TrainParams
) -> dict[str, torch.Tensor]:
    ends = data.ends(segment, p.time_steps)
    pred = predict(model, data, ends, p.time_steps, p.eval_batch_size)
    S = data.n_securities
    d, s = ends // S, ends % S
    y = data.target[d, s]
    w = None if data.weight is None else data.weight[d, s]
    return evaluate(pred, y, d, w, data.cfg.task, panel=S > 1)


def fit(
    model: nn.Module,
    data: Prepared,
    p: TrainParams,
    on_epoch: Callable[[EpochResult], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    keep_best: bool = False,
) -> FitResult:
    """Train `model` on the training windows of `data`; validate after every epoch.

    `on_epoch` may raise (a pruner's TrialPruned) to end training. `should_stop` is polled
    after every batch (a plain Python flag, no device sync) and raises Interrupted.
    """
    device = data.device
    model.to(device)
    opt = make_optimizer(p.optimizer, model.parameters(), p.lr, p.weight_decay)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(p.seed if p.seed is not None else torch.seed() % (2**63))
    train_ends = data.ends("train", p.time_steps)
    n = len(train_ends)
    per_epoch = min(n, p.max_windows_per_epoch) if p.max_windows_per_epoch > 0 else n
    task = data.cfg.task
    result = FitResult(math.inf, 0, 0, 0.0)
    start = time.perf_counter()
    bad_epochs = 0
    for epoch in range(1, p.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=gen)[:per_epoch].to(device)
        total = torch.zeros((), device=device)
        for i in range(0, per_epoch, p.batch_size):
            b = data.batch(train_ends[order[i : i + p.batch_size]], p.time_steps)
            loss = loss_fn(model(b.x), b.y, b.w, task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
            opt.step()
            total += loss.detach() * b.y.shape[0]
            if should_stop():
                raise Interrupted("stop requested")
        val = {k: float(v) for k, v in validate(model, data, "val", p).items()}
        train_loss = float(total) / max(per_epoch, 1)
        r = EpochResult(epoch, train_loss, val)
        result.history.append(r)
        result.epochs_run = epoch
        result.seconds = time.perf_counter() - start
        if not (math.isfinite(train_loss) and math.isfinite(r.val_loss)):
            raise NonFiniteLoss(
                f"non-finite loss at epoch {epoch}: train {train_loss}, validation {r.val_loss}"
            )
        if r.val_loss < result.best_val_loss:
            result.best_val_loss, result.best_epoch, bad_epochs = r.val_loss, epoch, 0
            if keep_best:
                result.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        if on_epoch is not None:
            on_epoch(r)
        if p.patience and bad_epochs >= p.patience:
            result.stopped_early = True
            break
    result.seconds = time.perf_counter() - start
    return result
