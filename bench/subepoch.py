"""Pruning on work done: does reporting inside epochs keep the search's choice, and what
does it save? Record, then replay.

    python bench/subepoch.py --data ../shared/data/cn_sse_mainboard.parquet --trials 30
    python bench/subepoch.py --replay bench-subepoch.json      # replay saved records only

Record: trials of the default study's space (CPU-sized on a CPU; params drawn by a seeded
random sampler, every trial trained for all its epochs with its own seed, no pruning). Every
`--unit` windows inside an epoch and at each epoch's end, each trial is scored as the
product scores a report (`[budget] val_dates` / `val_windows`: the per-report subset); at
each epoch's end also on the whole validation segment (the trial's value) and the whole
test segment. Each scoring and each epoch's training are timed.

Replay: for each `report_every` (0 = one report per epoch, the resource is the epoch; else
every so many windows, the resource is the windows trained) and pruner as `optuna-run` sets
them up (search.study.pruners.make_pruner), the trials are fed in order to a fresh study: a
report at each point the product would report, the pruner decides (never at the last
epoch), a trial that finishes takes its best epoch by the report's metric and is valued by
the whole validation segment at that epoch. Printed per setting: the training windows spent
(against training every trial in full), the reports' cost against that training, the
pruning decisions, the selected trial, its validation value and its test rank IC.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import torch

from data import Prepared, load_panel
from models import Member, Report, fit
from models.train import EpochResult, as_members, to_floats, validate
from search.config.schema import build_config
from search.study.objective import make_members, train_params
from search.study.pruners import epoch_range, make_pruner

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "sp500_sample.parquet"
KEY = "rank_ic"


def config(data: str, device: str, seed: int, **search: Any) -> Any:
    return build_config(
        None,
        cpu=device == "cpu",
        flags={"data": {"path": data}, "search": {"seed": seed, **search}},
    )


def record(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    cfg = config(args.data, args.device, args.seed)
    warnings.filterwarnings("ignore")
    panel = load_panel(cfg.data)
    data = Prepared(panel, cfg.data, device, eval_time_steps=int(cfg.space.max("time_steps")))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
    print(
        f"recording {args.trials} trials on {Path(panel.source).name} ({data.n_securities} "
        f"securities; {epoch_range(cfg, data)[1]:,} training windows an epoch at most; a report "
        f"every {args.unit:,} windows on {cfg.budget.val_dates} dates x "
        f"{cfg.budget.val_windows or 'all'} windows)",
        flush=True,
    )
    trials = []
    for i in range(args.trials):
        trial = study.ask()
        p = cfg.space.suggest(trial)
        seed = args.seed * 100_003 + i
        tp = replace(train_params(p, cfg.budget, seed), report_every=args.unit)
        members = [Member(-1, seed)]
        model = make_members(p, data, members)
        net = as_members(model)
        points: list[dict[str, Any]] = []  # every report, in order
        epochs: list[dict[str, Any]] = []

        def on_report(r: Report, points: list[dict[str, Any]] = points) -> None:
            points.append({"done": r.done, "epoch": r.epoch, "end": False, "v": r.val[KEY]})

        def on_epoch(
            r: EpochResult,
            points: list[dict[str, Any]] = points,
            epochs: list[dict[str, Any]] = epochs,
            net: torch.nn.Module = net,
            tp: Any = tp,
            members: list[Member] = members,
        ) -> None:
            points.append({"done": r.done, "epoch": r.epoch, "end": True, "v": r.val[KEY]})
            t0 = time.perf_counter()
            full = to_floats(validate(net, data, "val", tp, members))[0][KEY]
            full_s = time.perf_counter() - t0
            test = to_floats(validate(net, data, "test", tp, members))[0][KEY]
            epochs.append(
                {
                    "train_s": r.train_seconds,
                    "report_s": r.val_seconds,
                    "windows": r.windows,
                    "full": full,
                    "full_s": full_s,
                    "test": test,
                }
            )

        fit(model, data, tp, on_epoch=on_epoch, on_report=on_report, members=members)
        per_epoch = epochs[0]["windows"]
        trials.append(
            {"params": trial.params, "per_epoch": per_epoch, "points": points, "epochs": epochs}
        )
        study.tell(trial, epochs[-1]["full"])
        print(
            f"  trial {i:>3}: {len(epochs)} epochs of {per_epoch:,} windows, "
            f"{len(points)} reports, best full-validation {KEY} "
            f"{max(e['full'] for e in epochs):+.4f}, "
            f"{sum(e['train_s'] for e in epochs):.1f} s training",
            flush=True,
        )
    return {
        "data": str(args.data),
        "device": args.device,
        "seed": args.seed,
        "unit": args.unit,
        "epoch_range": list(epoch_range(cfg, data)),
        "trials": trials,
    }


def epochs_of(rec: dict[str, Any]) -> tuple[int, int]:
    """(fewest, most) training windows an epoch trains (records of an earlier format: one
    figure, the cap, which bound every trial)."""
    if "epoch_range" in rec:
        return rec["epoch_range"][0], rec["epoch_range"][1]
    return rec["epoch_windows"], rec["epoch_windows"]


def schedule(t: dict[str, Any], every: int) -> list[dict[str, Any]]:
    """The reports the product makes with `report_every` = every (0: epoch ends only):
    epoch ends, and the recorded points on multiples of `every` (the recording's unit
    divides it and the batch sizes divide the unit, so those are the product's points)."""
    if every == 0:
        return [p for p in t["points"] if p["end"]]
    return [p for p in t["points"] if p["end"] or p["done"] % every == 0]


def replay(rec: dict[str, Any], every: int, pruner_name: str, order: list[int]) -> dict[str, Any]:
    """Feed the recorded curves, in `order`, to a fresh study with the product's pruner."""
    cfg = config(rec["data"], rec["device"], rec["seed"], pruner=pruner_name)
    cfg = replace(cfg, budget=replace(cfg.budget, report_every=every))
    study = optuna.create_study(
        direction="maximize", pruner=make_pruner(cfg, epochs_of(rec)), study_name="replay"
    )
    spent = reports = 0
    values: dict[int, tuple[float, float]] = {}  # trial -> (its value, its test)
    for n in order:
        t = rec["trials"][n]
        trial = study.ask()
        n_epochs = len(t["epochs"])
        stopped = None
        for p in schedule(t, every):
            reports += 1
            trial.report(p["v"], p["done"] if every else p["epoch"])
            if p["epoch"] < n_epochs and trial.should_prune():  # never in the last epoch
                stopped = p
                break
        if stopped is not None:
            spent += stopped["done"]
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        spent += t["per_epoch"] * n_epochs
        ends = [p for p in t["points"] if p["end"]]
        e = t["epochs"][max(range(n_epochs), key=lambda j: ends[j]["v"])]
        values[n] = (e["full"], e["test"])
        study.tell(trial, values[n][0])
    chosen = max(values, key=lambda n: values[n][0])
    return {"spent": spent, "reports": reports, "chosen": chosen, "test": values[chosen][1]}


def report(rec: dict[str, Any], everies: list[int], orders: int) -> None:
    trials = rec["trials"]
    n = len(trials)
    ends = [[p for p in t["points"] if p["end"]] for t in trials]
    # each trial's value and test at its best epoch (by the report), as with no pruning
    best = [
        t["epochs"][max(range(len(t["epochs"])), key=lambda j, e=e: e[j]["v"])]
        for t, e in zip(trials, ends, strict=True)
    ]
    unpruned = max(range(n), key=lambda k: best[k]["full"])
    tests = [b["test"] for b in best]
    full = sum(t["per_epoch"] * len(t["epochs"]) for t in trials)
    train_s = sum(e["train_s"] for t in trials for e in t["epochs"])
    rate = full / train_s  # training windows per second, over all trials
    # the seconds of one report on the per-report subset: an epoch's reports' time over
    # their count (its mid-epoch ones and its end's)
    report_s = statistics.median(
        e["report_s"] / sum(1 for p in t["points"] if p["epoch"] == k)
        for t in trials
        for k, e in enumerate(t["epochs"], start=1)
    )
    print(
        f"{n} recorded trials, {full:,} training windows if none is pruned ({train_s:.0f} s, "
        f"{rate:,.0f} windows/s); a report {report_s * 1000:.0f} ms. Test {KEY} of each "
        f"trial at its best epoch: median {statistics.median(tests):+.4f}, best "
        f"{max(tests):+.4f}; with no pruning trial {unpruned} is selected (test "
        f"{tests[unpruned]:+.4f}). Each setting replayed in {orders} orders of the trials "
        "(the first as recorded, the rest shuffled); figures are means over the orders."
    )
    rng = random.Random(0)
    perms = [list(range(n))] + [rng.sample(range(n), n) for _ in range(orders - 1)]
    for pruner in ("hyperband", "successive_halving"):
        print(f"\npruner {pruner}:")
        print(
            f"{'report_every':>12} {'first cut':>10} {'windows trained':>16} {'share':>6} "
            f"{'reports':>8} {'est. time':>9} {'selected: test':>15} {'+- sd':>7} "
            f"{'= unpruned':>10}"
        )
        for every in everies:
            rs = [replay(rec, every, pruner, order) for order in perms]
            spent = statistics.mean(r["spent"] for r in rs)
            reps = statistics.mean(r["reports"] for r in rs)
            secs = spent / rate + reps * report_s
            sel = [r["test"] for r in rs]
            same = sum(r["chosen"] == unpruned for r in rs) / len(rs)
            first = min(every, epochs_of(rec)[0]) if every else epochs_of(rec)[1]
            sd = statistics.stdev(sel) if len(sel) > 1 else 0.0
            print(
                f"{every or 'epoch':>12} {first:>10,} {spent:>16,.0f} {spent / full:>6.2f} "
                f"{reps:>8.0f} {secs:>8.0f}s {statistics.mean(sel):>+15.4f} {sd:>7.4f} "
                f"{same:>10.0%}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(SAMPLE))
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--unit", type=int, default=8192, help="windows between recorded reports")
    ap.add_argument(
        "--every", default="0,8192,16384,32768", help="report_every values replayed (0 = epochs)"
    )
    ap.add_argument("--orders", type=int, default=20, help="orders of the trials replayed")
    ap.add_argument("--out", default="bench-subepoch.json", help="where the records go")
    ap.add_argument("--replay", default=None, help="replay these saved records only")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.replay:
        rec = json.loads(Path(args.replay).read_text())
    else:
        rec = record(args)
        Path(args.out).write_text(json.dumps(rec))
        print(f"records: {args.out}")
    everies = [int(x) for x in args.every.split(",")]
    bad = [e for e in everies if e % rec["unit"]]
    if bad:
        ap.error(f"--every: each value must be a multiple of the recorded unit {rec['unit']}")
    report(rec, everies, args.orders)


if __name__ == "__main__":
    main()
