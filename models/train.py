"""Training loop: shuffled window batches gathered from the device panel, last-step loss,
gradient-norm clipping, validation after every epoch, one host sync per epoch."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from data.prepared import Batch, PanelTensors, Prepared
from models.ensemble import Members
from models.metrics import evaluate, loss_fn


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss; `epoch` is the epoch that ended with it (its
    windows were trained), or None."""

    def __init__(self, message: str, epoch: EpochResult | None = None) -> None:
        super().__init__(message)
        self.epoch = epoch


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
    val_dates: int = 0  # validation dates scored per report (0 = all); the final score uses all
    val_windows: int = 0  # at most this many of their windows per report (0 = all)
    precision: str = "fp32"  # "fp16": CUDA autocast + gradient scaling; "bf16": autocast
    lr_schedule: str = "constant"  # or "cosine": lr decays to 5% over every planned step
    report_every: int = 0  # windows (per network) between mid-epoch reports (0 = epochs only)


LR_SCHEDULES = ("constant", "cosine")
# Training arithmetic: the autocast dtype of the forward passes (fp32: none)
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Member:
    """One model of a configuration: trained on fold `fold` with seed `seed`."""

    fold: int
    seed: int


@dataclass
class EpochResult:
    epoch: int  # 1-based: epochs trained so far
    train_loss: float
    val: dict[str, float]  # mean over members
    members: list[dict[str, float]] = field(default_factory=list)  # one dict per member
    windows: int = 0  # windows trained this epoch, summed over members
    train_seconds: float = 0.0  # the epoch's training passes (forward, backward, step)
    val_seconds: float = 0.0  # its validation (mid-epoch reports included)
    planned: int = 0  # the epochs fit was asked for (early stopping may end it sooner)
    done: int = 0  # windows trained per network since the start of fit

    @property
    def val_loss(self) -> float:
        return self.val["loss"]


@dataclass
class Report:
    """A validation inside an epoch (`TrainParams.report_every`): the members' mean metrics
    on the per-epoch validation subset after `done` windows per network. `windows`,
    `train_seconds` and `val_seconds` count this epoch so far (summed over members)."""

    epoch: int  # the epoch under way, 1-based
    done: int  # windows trained per network since the start of fit
    val: dict[str, float]
    fraction: float = 0.0  # the share of this epoch trained
    windows: int = 0
    train_seconds: float = 0.0
    val_seconds: float = 0.0


@dataclass(frozen=True)
class Step:
    """Where a fit stands after a batch: `trained` of `per_epoch` windows per network in epoch
    `epoch` of `planned`, `networks` trained together (for progress lines; no device sync)."""

    epoch: int
    planned: int
    trained: int
    per_epoch: int
    networks: int


@dataclass
class FitResult:
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[EpochResult] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    stopped_early: bool = False
    best_score: float = math.inf  # the minimised selection score at the best epoch
    final: EpochResult | None = None  # every validation date scored at the best epoch
    final_seconds: float = 0.0  # time spent scoring `final`

    @property
    def best(self) -> EpochResult:
        """The best epoch, scored on every validation date."""
        return self.final if self.final is not None else self.history[self.best_epoch - 1]


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda p, lr, wd, **kw: torch.optim.Adam(p, lr=lr, weight_decay=wd, **kw),
    "adamw": lambda p, lr, wd, **kw: torch.optim.AdamW(p, lr=lr, weight_decay=wd, **kw),
    "sgd": lambda p, lr, wd, **kw: torch.optim.SGD(p, lr=lr, weight_decay=wd, momentum=0.9, **kw),
    "rmsprop": lambda p, lr, wd, **kw: torch.optim.RMSprop(p, lr=lr, weight_decay=wd),
}
FUSED = ("adam", "adamw")  # fused CUDA kernels since torch 2.0 (SGD's came later)


def make_optimizer(
    name: str, params: object, lr: float, wd: float, device: torch.device | None = None
) -> torch.optim.Optimizer:
    """The optimizer `name`; on a CUDA device Adam and AdamW are fused (one kernel updates
    every parameter, instead of several kernels per parameter group)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names are {sorted(OPTIMIZERS)}")
    fused = device is not None and device.type == "cuda" and name in FUSED
    return OPTIMIZERS[name](params, lr, wd, **({"fused": True} if fused else {}))


# Elements (T x M x B x F) of one validation batch: bounds its memory on wide panels.
EVAL_BATCH_ELEMENTS = 1 << 24


def as_members(model: nn.Module) -> nn.Module:
    """An ensemble module (forward on (T, M, B, F)); a plain network becomes one member."""
    return model if hasattr(model, "to_nets") else Members([model])


def _padded(
    data: Prepared,
    segment: str,
    time_steps: int,
    members: list[Member],
    max_dates: int = 0,
    max_windows: int = 0,
) -> tuple[torch.Tensor, list[int]]:
    """(M, N) end points: each member's fold's windows, padded by repeating the first."""
    ends = [data.ends(segment, time_steps, m.fold, max_dates, max_windows) for m in members]
    n = max(len(e) for e in ends)
    rows = [torch.cat([e, e[:1].expand(n - len(e))]) if len(e) else e for e in ends]
    if any(len(e) == 0 for e in ends):
        raise ValueError(f"a member's {segment} segment has no window of {time_steps} dates")
    return torch.stack(rows), [len(e) for e in ends]


@torch.inference_mode()
def predict_members(
    model: nn.Module,
    data: PanelTensors,
    ends: torch.Tensor,
    folds: torch.Tensor,
    time_steps: int,
    batch_size: int,
) -> torch.Tensor:
    """(M, N[, C]) member outputs for the (M, N) end points, in bounded batches."""
    model.eval()
    M, N = ends.shape
    bs = max(1, min(batch_size, EVAL_BATCH_ELEMENTS // (time_steps * data.n_features * M)))
    n_out = int(getattr(model, "n_outputs", 1))
    out = torch.empty((M, N) if n_out == 1 else (M, N, n_out), device=data.device)
    for i in range(0, N, bs):
        out[:, i : i + bs] = model(data.batch(ends[:, i : i + bs], time_steps, folds).x)
    return out


def predict(
    model: nn.Module, data: Prepared, ends: torch.Tensor, time_steps: int, batch_size: int
) -> torch.Tensor:
    """One network's predictions for the windows ending at `ends` (fold -1's scaler)."""
    folds = torch.full((1,), -1, device=data.device)
    return predict_members(as_members(model), data, ends[None], folds, time_steps, batch_size)[0]


def validate(
    model: nn.Module,
    data: Prepared,
    segment: str,
    p: TrainParams,
    members: list[Member] | None = None,
    max_dates: int = 0,
    max_windows: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """Every metric of each member on its fold's `segment` windows (device tensors), on at
    most `max_dates` evenly spaced dates of the segment and at most `max_windows` of their
    windows (0 = all)."""
    model = as_members(model)
    members = members or [Member(-1, 0)]
    ends, counts = _padded(data, segment, p.time_steps, members, max_dates, max_windows)
    folds = torch.tensor([m.fold for m in members], device=data.device)
    pred = predict_members(model, data, ends, folds, p.time_steps, p.eval_batch_size)
    S = data.n_securities
    out = []
    for m, n in enumerate(counts):
        e = ends[m, :n]
        d, s = e // S, e % S
        w = None if data.weight is None else data.weight[d, s]
        out.append(
            evaluate(
                pred[m, :n],
                data.target[d, s],
                d,
                w,
                data.cfg.task,
                panel=S > 1,
                periods_per_year=252 / data.cfg.horizon,
                se_lag=data.cfg.horizon - 1,
            )
        )
    return out


def to_floats(metrics: list[dict[str, torch.Tensor]]) -> list[dict[str, float]]:
    """Device metrics -> Python floats with one host sync."""
    keys = list(metrics[0])
    flat = torch.stack([m[k].double() for m in metrics for k in keys]).tolist()
    return [
        dict(zip(keys, flat[i * len(keys) : (i + 1) * len(keys)], strict=True))
        for i in range(len(metrics))
    ]


def mean_metrics(members: list[dict[str, float]]) -> dict[str, float]:
    """Mean over members of each metric (NaN when any member's is NaN)."""
    return {k: sum(m[k] for m in members) / len(members) for k in members[0]}


@functools.cache
def cpu_bf16_works() -> bool:
    """Whether this CPU runs an LSTM and a GRU under bfloat16 autocast, forward and backward
    (oneDNN's bf16 RNN needs AVX-512 or AMX; an AVX2-only CPU refuses it)."""
    try:
        for rnn in (torch.nn.LSTM(2, 2), torch.nn.GRU(2, 2)):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out, _ = rnn(torch.zeros(2, 1, 2))
            out.float().sum().backward()
    except RuntimeError:
        return False
    return True


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """The gradient scaler of `precision` "fp16" (CUDA only); None for "fp32" and "bf16"
    (bfloat16 has float32's exponent range: its gradients need no scaling)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {list(PRECISIONS)}")
    if precision != "fp16":
        return None
    if device.type != "cuda":
        raise ValueError(f"precision fp16 needs a CUDA device, not {device}")
    return torch.amp.GradScaler("cuda")


def make_schedule(
    opt: torch.optim.Optimizer, p: TrainParams, per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning rate's schedule over every planned step (None: constant): "cosine"
    decays it from `lr` to 5% of it by the last batch of the last epoch."""
    if p.lr_schedule == "constant":
        return None
    if p.lr_schedule != "cosine":
        raise ValueError(f"unknown lr_schedule {p.lr_schedule!r}; valid: {list(LR_SCHEDULES)}")
    steps = p.epochs * max(1, math.ceil(per_epoch / p.batch_size))
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.05 * p.lr)


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    x: torch.Tensor,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    grad_clip: float,
    amp: torch.dtype | None = None,
) -> torch.Tensor:
    """One training step of an ensemble module on the batch `x`: forward (under autocast
    in `amp`, float16 when only a `scaler` is given; the loss in float32), backward, each
    member's gradient norm clipped (the true gradients: unscaled first), optimizer step
    (skipped by the scaler when a gradient overflowed). Returns the loss."""
    if amp is None and scaler is not None:
        amp = torch.float16
    if amp is None:
        out = model(x)
    else:
        with torch.autocast(x.device.type, dtype=amp):
            out = model(x)
        out = out.float()  # the loss in float32
    loss = loss_of(out)
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        model.clip_grad_norm_(grad_clip)  # type: ignore[operator]
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        model.clip_grad_norm_(grad_clip)  # type: ignore[operator]
        scaler.step(opt)
        scaler.update()
    return loss


def fit(
    model: nn.Module,
    data: Prepared,
    p: TrainParams,
    on_epoch: Callable[[EpochResult], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    keep_best: bool = False,
    members: list[Member] | None = None,
    score: Callable[[dict[str, float]], float] | None = None,
    on_report: Callable[[Report], None] | None = None,
    on_step: Callable[[Step], None] | None = None,
) -> FitResult:
    """Train `model` (one network, or an ensemble of `members`) and validate every epoch.

    Each member m trains on the training windows of its fold in its own seeded order; an
    epoch is the same number of windows for every member (the budget cap, or the smallest
    fold's count). The members' losses are summed and their gradient norms clipped one by
    one, so each trains as it would alone. The best epoch minimises `score` (default: the
    validation loss) of the members' mean metrics. `on_epoch` may raise (a pruner's
    TrialPruned) to end training; `should_stop` is polled after every batch (a plain
    Python flag, no device sync) and raises Interrupted.

    With `p.report_every` > 0 and `on_report` given, the members are also validated (on the
    per-epoch subset) after the first batch that reaches each multiple of `report_every`
    windows per network trained since the start of the fit, unless that batch ends an
    epoch (the epoch's own report stands for it), and `on_report` gets the result (it may
    raise too). The steps of every trial then fall on the same multiples wherever the
    batch size divides `report_every`. These reports only look: the weights, the batches
    and the dropout masks are those of a fit without them; their time, `on_report`'s
    included, counts as validation. `on_step` sees where the fit stands after every batch
    (plain numbers, no device sync: progress lines).
    """
    device = data.device
    net = model
    model = as_members(model).to(device)
    seed = p.seed if p.seed is not None else torch.seed() % (2**31)
    members = members or [Member(-1, seed)]
    if len(members) != getattr(model, "n_members", 1):
        raise ValueError(f"{len(members)} members for a model of {model.n_members} members")
    score = score or (lambda v: v["loss"])
    torch.manual_seed(members[0].seed)  # dropout masks
    opt = make_optimizer(p.optimizer, model.parameters(), p.lr, p.weight_decay, device)
    gens = [torch.Generator(device="cpu").manual_seed(m.seed) for m in members]
    train_ends = [data.ends("train", p.time_steps, m.fold) for m in members]
    n = min(len(e) for e in train_ends)
    per_epoch = min(n, p.max_windows_per_epoch) if p.max_windows_per_epoch > 0 else n
    folds = torch.tensor([m.fold for m in members], device=device)
    subset = any(
        len(data.ends("val", p.time_steps, m.fold, p.val_dates, p.val_windows))
        < len(data.ends("val", p.time_steps, m.fold))
        for m in members
    )
    task = data.cfg.task
    scaler = make_scaler(p.precision, device)
    amp = PRECISIONS[p.precision]
    schedule = make_schedule(opt, p, per_epoch)
    result = FitResult(math.inf, 0, 0, 0.0)
    start = time.perf_counter()
    bad_epochs = 0

    def on_subset() -> list[dict[str, float]]:
        """Each member's metrics on the per-report validation subset."""
        return to_floats(validate(model, data, "val", p, members, p.val_dates, p.val_windows))

    every = p.report_every if on_report is not None else 0
    done = 0  # windows trained per member
    next_report = every
    for epoch in range(1, p.epochs + 1):
        t0 = time.perf_counter()
        mid_val = 0.0  # this epoch's mid-epoch validation time
        model.train()
        order = torch.stack(
            [
                e[torch.randperm(len(e), generator=g)[:per_epoch].to(device)]
                for e, g in zip(train_ends, gens, strict=True)
            ]
        )  # (M, per_epoch) end points
        total = torch.zeros((), device=device)
        for i in range(0, per_epoch, p.batch_size):
            b = data.batch(order[:, i : i + p.batch_size], p.time_steps, folds)

            def members_loss(out: torch.Tensor, b: Batch = b) -> torch.Tensor:  # (M, B[, C])
                return torch.stack(
                    [
                        loss_fn(out[m], b.y[m], None if b.w is None else b.w[m], task)
                        for m in range(len(members))
                    ]
                ).sum()

            loss = train_step(model, opt, scaler, b.x, members_loss, p.grad_clip, amp)
            if schedule is not None:
                schedule.step()
            total += loss.detach() * b.y.shape[1]
            if should_stop():
                raise Interrupted("stop requested")
            trained = min(i + p.batch_size, per_epoch)
            if on_step is not None:
                on_step(Step(epoch, p.epochs, trained, per_epoch, len(members)))
            if every and done + trained >= next_report:
                next_report = ((done + trained) // every + 1) * every
                if trained < per_epoch:  # the epoch's end reports on its own
                    assert on_report is not None
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)  # the queued training is training time
                    tv = time.perf_counter()
                    val = mean_metrics(on_subset())
                    model.train()
                    rep = Report(
                        epoch,
                        done + trained,
                        val,
                        fraction=trained / per_epoch,
                        windows=trained * len(members),
                        train_seconds=tv - t0 - mid_val,
                        val_seconds=mid_val + time.perf_counter() - tv,
                    )
                    try:
                        on_report(rep)  # the pruner and the storage: counted as validation
                    finally:
                        mid_val += time.perf_counter() - tv
        done += per_epoch
        train_loss = float(total) / max(per_epoch, 1) / len(members)  # the epoch's one sync
        t1 = time.perf_counter()
        per_member = on_subset()
        r = EpochResult(
            epoch,
            train_loss,
            mean_metrics(per_member),
            per_member,
            windows=per_epoch * len(members),
            train_seconds=t1 - t0 - mid_val,
            val_seconds=time.perf_counter() - t1 + mid_val,
            planned=p.epochs,
            done=done,
        )
        result.history.append(r)
        result.epochs_run = epoch
        result.seconds = time.perf_counter() - start
        if not (math.isfinite(train_loss) and math.isfinite(r.val_loss)):
            raise NonFiniteLoss(
                f"non-finite loss at epoch {epoch}: train {train_loss}, validation {r.val_loss}",
                epoch=r,
            )
        s = score(r.val)
        if s < result.best_score or result.best_epoch == 0:
            result.best_score, result.best_epoch, bad_epochs = s, epoch, 0
            result.best_val_loss = r.val_loss
            if keep_best or subset:
                result.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad_epochs += 1
        if on_epoch is not None:
            on_epoch(r)
        if p.patience and bad_epochs >= p.patience:
            result.stopped_early = True
            break
    if subset and result.best_state is not None:
        # the best epoch's weights, scored on every validation date
        t0 = time.perf_counter()
        last = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.load_state_dict(result.best_state)
        per_member = to_floats(validate(model, data, "val", p, members))
        best = result.history[result.best_epoch - 1]
        result.final = EpochResult(
            best.epoch, best.train_loss, mean_metrics(per_member), per_member
        )
        result.best_val_loss = result.final.val_loss
        net.load_state_dict(last)
        result.final_seconds = time.perf_counter() - t0
        if not keep_best:
            result.best_state = None
    result.seconds = time.perf_counter() - start
    return result
