"""Where a study's time goes, and how fast its training passes run.

    python bench/throughput.py                                   # bundled sample, CPU
    python bench/throughput.py --data ../shared/data/sp500_5yr.parquet --trials 40
    python bench/throughput.py --device cuda --trials 100 --data sp500_5yr.parquet

Part 1 runs the default study (studies/default.toml: its CPU space and budget on a CPU) in
this process on a fresh SQLite file, as `optuna-run` would, and prints from the trials' own
records: trials/hour; the share of the wall time in training passes (forward, backward,
optimizer step, batch gathering), in validation (per-epoch reports and the final scoring),
in the rest of the trials (building models, clean-up) and in the search around them
(sampler, pruner, storage); training windows/s and the achieved GFLOP/s of the training
passes next to this device's dense-matmul GFLOP/s; epochs run / requested; peak memory.

Part 2 trains one configuration (time_steps 20, hidden 32, 1 layer) for one epoch on the same
data, two ways: the seeds' way (every window materialised by a Python loop into one array,
a DataLoader with shuffled batches) and ours (`models.fit`: end points on the device, each
batch gathered from the panel), at batch 64 and at our default batch, and prints windows/s
and the ratio, measured in this run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from torch import nn

from data import Prepared, fingerprint, load_panel
from models import Member, TrainParams, build_model, fit
from models.lstm import RecurrentNet
from models.train import EpochResult
from search.config.schema import build_config
from search.study.create import open_study
from search.study.pruners import make_sampler, study_pruner
from search.study.runner import Stop, run_trials

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "sp500_sample.parquet"


def lstm_flops(n_features: int, hidden: int, layers: int, time_steps: int, head: int) -> float:
    """FLOPs of one window's forward pass: the gate matmuls of every layer and step (2 per
    multiply-add) and the head. A training pass is counted as 3x the forward."""
    f = 0.0
    width = n_features
    for _ in range(layers):
        f += 2.0 * 4 * hidden * (width + hidden) * time_steps
        width = hidden
    f += 2.0 * (hidden * head + head if head else hidden)
    return f


def matmul_gflops(device: torch.device, n: int = 1024, seconds: float = 1.0) -> float:
    """Dense fp32 matmul throughput of this device, in the threads torch uses now."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        if device.type == "cuda" and reps % 50:
            continue
        sync(device)
    sync(device)
    return 2.0 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_host_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def study_part(args: argparse.Namespace, device: torch.device, tmp: str) -> Prepared:
    flags: dict[str, dict[str, Any]] = {
        "data": {"path": args.data},
        "study": {"name": "throughput"},
        "search": {"seed": args.seed},
    }
    cfg = build_config(
        Path(args.config) if args.config else None, cpu=device.type == "cpu", flags=flags
    )
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    panel = load_panel(cfg.data)
    data = Prepared(panel, cfg.data, device, eval_time_steps=int(cfg.space.max("time_steps")))
    load_s = time.perf_counter() - t0
    url = f"sqlite:///{tmp}/throughput.db"
    from search.storage.rdb import make_storage

    storage = make_storage(url, heartbeat_interval=None)
    open_study(
        storage,
        cfg,
        fingerprint(cfg.data),
        make_sampler(cfg),
        study_pruner(cfg, data),
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"data: {Path(panel.source).name}: {len(panel.dates)} dates x {data.n_securities} securities "
        f"x {data.n_features} features, loaded in {load_s:.1f}s; budget "
        f"{cfg.budget.max_windows_per_epoch or 'all'} windows/epoch, val_dates "
        f"{cfg.budget.val_dates or 'all'}; {device}, {torch.get_num_threads()} threads",
        flush=True,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    run_trials(
        cfg,
        url,
        data,
        n_trials=args.trials,
        timeout=args.timeout,
        max_trials=None,
        on_trial=lambda ev: None,
        stop=Stop(),
    )
    wall = time.perf_counter() - start
    trials = [
        t
        for t in optuna.load_study(study_name="throughput", storage=url).trials
        if t.state.is_finished()
    ]
    param = lambda t, k: t.params.get(k, cfg.space.max(k))  # noqa: E731
    report_study(trials, wall, data.n_features, device, param)
    return data


def report_study(
    trials: list[optuna.trial.FrozenTrial],
    wall: float,
    n_features: int,
    device: torch.device,
    param: Any,
    memory: bool = True,
) -> None:
    def total(key: str) -> float:
        return float(sum(t.user_attrs.get(key, 0.0) or 0.0 for t in trials))

    in_trials = total("train_seconds")
    train, val = total("fit_train_seconds"), total("fit_val_seconds")
    windows = total("windows_trained")
    flops = 0.0
    for t in trials:
        flops += (
            3.0
            * float(t.user_attrs.get("windows_trained", 0))
            * lstm_flops(
                n_features,
                int(param(t, "hidden_dim")),
                int(param(t, "num_layers")),
                int(param(t, "time_steps")),
                int(param(t, "head_dim")),
            )
        )
    run = sum(  # fractional where a report inside an epoch pruned the trial
        float(t.user_attrs.get("epochs_trained", t.user_attrs.get("epochs_run", 0))) for t in trials
    )
    asked = sum(int(param(t, "epochs")) for t in trials)
    states = [t.state.name for t in trials]
    print(
        f"study: {len(trials)} trials ({', '.join(f'{states.count(s)} {s}' for s in sorted(set(states)))})"
        f" in {wall:.1f}s = {len(trials) / wall * 3600:.0f} trials/hour",
        flush=True,
    )
    rows = [
        ("training passes", train),
        ("validation", val),
        ("rest of the trials", in_trials - train - val),
        ("search and storage", wall - in_trials),
    ]
    for name, s in rows:
        print(f"  {name:<20} {s:8.1f}s  {100 * s / wall:5.1f}% of the wall time")
    gemm = matmul_gflops(device)
    print(
        f"training: {windows / max(train, 1e-9):,.0f} windows/s, "
        f"{flops / max(train, 1e-9) / 1e9:.2f} GFLOP/s achieved "
        f"(dense fp32 matmul here: {gemm:.1f} GFLOP/s)"
    )
    print(f"epochs run / requested: {run:.1f} / {asked} = {run / max(asked, 1):.2f}")
    if not memory:
        return
    line = f"peak memory: host {peak_host_mib():.0f} MiB"
    if device.type == "cuda":
        line += f", device {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
    print(line, flush=True)


def report_existing(args: argparse.Namespace) -> None:
    """Part 1's figures for a study `optuna-run` ran (one worker: the wall time is taken from
    the trials' own start and end times)."""
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    trials = [t for t in study.trials if t.state.is_finished() and t.datetime_complete]
    start = min(t.datetime_start for t in trials if t.datetime_start)
    end = max(t.datetime_complete for t in trials if t.datetime_complete)
    cfg = build_config(
        Path(args.config) if args.config else None,
        cpu=args.device == "cpu",
        flags={"data": {"path": args.data}},
    )
    n_features = load_panel(cfg.data).values.shape[2]  # the panel only: no device tensors
    report_study(
        trials,
        (end - start).total_seconds(),
        n_features,
        torch.device(args.device),
        lambda t, k: t.params.get(k, cfg.space.max(k)),
        memory=False,
    )


def seed_style(
    data: Prepared, n: int, time_steps: int, hidden: int, batch: int, device: torch.device
) -> tuple[float, float]:
    """(seconds to materialise the windows, training windows/s) the seeds' way."""
    ends = data.ends("train", time_steps)[:n].cpu().numpy()
    values = data.panel.values  # (D, S, F), normalised as the product's panel is
    target = data.panel.target
    S = data.n_securities
    t0 = time.perf_counter()
    X = np.empty((len(ends), time_steps, data.n_features), dtype=np.float32)
    y = np.empty(len(ends), dtype=np.float32)
    for i, e in enumerate(ends):  # the windows, one at a time, as the notes build them
        d, s = divmod(int(e), S)
        X[i] = np.nan_to_num(values[d - time_steps + 1 : d + 1, s, :])
        y[i] = target[d, s]
    built = time.perf_counter() - t0
    ds = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True)
    torch.manual_seed(0)
    model = RecurrentNet(data.n_features, 1, hidden).to(device)  # nn.LSTM, linear head
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    for xb, yb in loader:
        xb = xb.to(device).transpose(0, 1)  # (T, B, F)
        yb = yb.to(device)
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    sync(device)
    return built, len(ends) / (time.perf_counter() - t0)


def ours(
    data: Prepared, n: int, time_steps: int, hidden: int, batch: int, device: torch.device
) -> float:
    """Training windows/s of `models.fit` for one epoch of `n` windows (its training passes
    only, as the epoch records them)."""
    torch.manual_seed(0)
    net = build_model(
        "lstm",
        n_features=data.n_features,
        n_outputs=1,
        hidden_dim=hidden,
        num_layers=1,
        dropout=0.0,
        head_dim=0,
        time_steps=time_steps,
    )
    p = TrainParams(
        time_steps=time_steps,
        epochs=1,
        batch_size=batch,
        lr=1e-3,
        max_windows_per_epoch=n,
        val_dates=1,
        seed=0,
    )
    seen: list[EpochResult] = []
    fit(net, data, p, on_epoch=seen.append, members=[Member(-1, 0)])
    return seen[0].windows / seen[0].train_seconds


def reference_part(args: argparse.Namespace, data: Prepared, device: torch.device) -> None:
    T, H = 20, 32
    n = min(args.windows, len(data.ends("train", T)))
    print(f"one epoch of {n:,} windows, time_steps {T}, hidden {H}, 1 layer, Adam, clipping:")
    runs = []
    for _ in range(args.repeat):
        built, ref = seed_style(data, n, T, H, 64, device)
        runs.append(
            (built, ref, ours(data, n, T, H, 64, device), ours(data, n, T, H, args.batch, device))
        )
    built = statistics.median(r[0] for r in runs)
    ref = statistics.median(r[1] for r in runs)
    print(
        f"  seed-style, batch 64: {ref:>9,.0f} windows/s (+{built:.1f}s before it to materialise "
        f"{n * T * data.n_features * 4 / 2**20:.0f} MiB of windows; the whole panel's would be "
        f"{len(data.ends('train', T)) * T * data.n_features * 4 / 2**30:.1f} GiB)"
    )
    for k, batch in ((2, 64), (3, args.batch)):
        ours_s = statistics.median(r[k] for r in runs)
        ratio = statistics.median(r[k] / r[1] for r in runs)
        print(f"  ours, batch {batch:>5}:  {ours_s:>9,.0f} windows/s = {ratio:.2f}x the seed-style")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(SAMPLE))
    ap.add_argument("--config", default=None, help="study TOML (default: studies/default.toml)")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=None, help="seconds for the study part")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--windows", type=int, default=16384, help="windows of the reference epoch")
    ap.add_argument("--batch", type=int, default=512, help="our default batch for part 2")
    ap.add_argument("--repeat", type=int, default=3, help="runs of part 2 (medians printed)")
    ap.add_argument("--skip-study", action="store_true")
    ap.add_argument(
        "--study",
        default=None,
        help="report part 1 from this existing study (with --storage) instead of running one; "
        "its wall time is from the first trial's start to the last one's end",
    )
    ap.add_argument("--storage", default=None)
    args = ap.parse_args()
    if args.study:
        report_existing(args)
        return
    device = torch.device(args.device if args.device != "cuda" else "cuda:0")
    print(f"torch {torch.__version__}, optuna {optuna.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.skip_study:
            cfg = build_config(None, cpu=device.type == "cpu", flags={"data": {"path": args.data}})
            data = Prepared(load_panel(cfg.data), cfg.data, device, eval_time_steps=20)
        else:
            data = study_part(args, device, tmp)
        reference_part(args, data, device)


if __name__ == "__main__":
    main()
