"""Does a cheaper per-epoch validation keep the search's choices? Record, then replay.

    python bench/val_replay.py --trials 40                       # bundled sample, CPU
    python bench/val_replay.py --data ../shared/data/sp500_5yr.parquet --trials 30
    python bench/val_replay.py --replay bench-records.json        # replay saved records only

Record: trials of the default study's space (CPU-sized on a CPU; params drawn by a seeded
random sampler, every trial trained for all its epochs with its own seed, no pruning). After
every epoch each trial is scored on the whole validation segment, on each cheaper policy
(a subset of dates, then of windows: `[budget] val_dates` / `val_windows`) and on the whole
test segment; each scoring is timed. The records are written to JSON.

Replay: for each policy and pruner (Hyperband and median, as `optuna-run` sets them up),
the trials are fed in order to a fresh in-memory study: each epoch's policy metric is
reported, the pruner decides (never at the last epoch, as in the product), a trial that
finishes takes the best epoch by the policy's metric and is valued, as in the product, by
the whole validation segment at that epoch. Printed per policy: pruning decisions that
differ from the full-validation policy's, the selected trial, its validation value and its
test rank IC at the selected epoch, and what the per-epoch validation cost against the
epoch's training passes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import torch

from data import Prepared, load_panel
from models import Member, TrainParams, fit
from models.train import EpochResult, as_members, to_floats, validate
from search.config.schema import build_config
from search.study.objective import make_members, train_params
from search.study.pruners import make_pruner

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "sp500_sample.parquet"
KEY = "rank_ic"
POLICIES = {  # name -> (val_dates, val_windows); "full" is every validation window
    "full": (0, 0),
    "d48": (48, 0),
    "d48w4096": (48, 4096),
    "d96w4096": (96, 4096),
    "d48w2048": (48, 2048),
}


def record(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    cfg = build_config(
        None,
        cpu=device.type == "cpu",
        flags={"data": {"path": args.data}, "search": {"seed": args.seed}},
    )
    warnings.filterwarnings("ignore")
    panel = load_panel(cfg.data)
    data = Prepared(panel, cfg.data, device, eval_time_steps=int(cfg.space.max("time_steps")))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
    trials = []
    print(
        f"recording {args.trials} trials on {Path(panel.source).name} ({data.n_securities} "
        f"securities; validation {len(data.split.val)} dates, "
        f"{len(data.ends('val', data.eval_time_steps))} windows)",
        flush=True,
    )
    for i in range(args.trials):
        trial = study.ask()
        p = cfg.space.suggest(trial)
        seed = args.seed * 100_003 + i
        tp = train_params(p, cfg.budget, seed)
        members = [Member(-1, seed)]
        epochs = train_recorded(make_members(p, data, members), data, tp, members)
        trials.append({"params": trial.params, "epochs": epochs})
        study.tell(trial, epochs[-1]["full"])
        best = max(e["full"] for e in epochs)
        print(f"  trial {i:>3}: {len(epochs)} epochs, best full-validation {KEY} {best:+.4f}")
    return {
        "data": str(args.data),
        "epochs": int(cfg.space.max("epochs")),
        "pruner_epochs": int(cfg.space.max("epochs")),
        "trials": trials,
        "policies": {k: list(v) for k, v in POLICIES.items()},
    }


def train_recorded(
    model: torch.nn.Module, data: Prepared, tp: TrainParams, members: list[Member]
) -> list[dict[str, Any]]:
    """Train every epoch; after each, score every policy and the test segment, timed."""
    net = as_members(model)
    epochs: list[dict[str, Any]] = []

    def on_epoch(r: EpochResult) -> None:
        row: dict[str, Any] = {
            "train_s": r.train_seconds,
            "windows": r.windows,
            "full": r.val[KEY],
            "full_s": r.val_seconds,
        }
        for name, (dates, windows) in POLICIES.items():
            if name == "full":
                continue
            t0 = time.perf_counter()
            v = to_floats(validate(net, data, "val", tp, members, dates, windows))[0]
            row[name], row[f"{name}_s"] = v[KEY], time.perf_counter() - t0
        row["test"] = to_floats(validate(net, data, "test", tp, members))[0][KEY]
        epochs.append(row)

    fit(model, data, replace(tp, val_dates=0, val_windows=0), on_epoch=on_epoch, members=members)
    return epochs


def replay(rec: dict[str, Any], policy: str, pruner_name: str) -> dict[str, Any]:
    """Feed the recorded curves to a fresh study with the product's pruner."""
    cfg = build_config(None, cpu=True, flags={"search": {"pruner": pruner_name}})
    cfg = replace(cfg, budget=replace(cfg.budget, report_every=0))  # the records: epochs
    pruner = make_pruner(cfg)
    study = optuna.create_study(direction="maximize", pruner=pruner, study_name="replay")
    decisions: list[int] = []  # epochs run per trial
    values: dict[int, tuple[float, float]] = {}
    spent: dict[int, int] = {}  # epochs run up to and including trial n
    for n, t in enumerate(rec["trials"]):
        trial = study.ask()
        eps = t["epochs"]
        run = len(eps)
        for k, e in enumerate(eps, start=1):
            trial.report(e[policy], k)
            if k < len(eps) and trial.should_prune():
                run = k
                break
        decisions.append(run)
        spent[n] = sum(decisions)
        seen = eps[:run]
        if run < len(eps):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        best = max(range(run), key=lambda j: seen[j][policy])
        values[n] = (seen[best]["full"], seen[best]["test"])
        study.tell(trial, values[n][0])
    chosen = max(values, key=lambda n: values[n][0])
    return {
        "decisions": decisions,
        "chosen": chosen,
        "value": values[chosen],
        "spent": spent,
        "values": values,
    }


def best_within(r: dict[str, Any], budget: int) -> tuple[float, float]:
    """(validation value, test) of the best trial completed within `budget` epochs."""
    inside = [n for n in r["values"] if r["spent"][n] <= budget]
    if not inside:
        return (float("nan"), float("nan"))
    n = max(inside, key=lambda k: r["values"][k][0])
    return r["values"][n]


def cost(rec: dict[str, Any], policy: str) -> float:
    """Median over epochs of the policy's validation seconds / training seconds."""
    key = "full_s" if policy == "full" else f"{policy}_s"
    return statistics.median(e[key] / e["train_s"] for t in rec["trials"] for e in t["epochs"])


def report(rec: dict[str, Any]) -> None:
    trials = rec["trials"]
    tests = [max(t["epochs"], key=lambda e: e["full"])["test"] for t in trials]
    print(
        f"{len(trials)} recorded trials; test {KEY} of each trial's best full-validation "
        f"epoch: median {statistics.median(tests):+.4f}, best {max(tests):+.4f}"
    )
    pruners = ("hyperband", "successive_halving", "median", "none")
    full = {p: replay(rec, "full", p) for p in pruners}
    budget = min(sum(r["decisions"]) for r in full.values())
    print(
        f"\npruners on full validation; 'at budget' = best trial completed within {budget} epochs:"
    )
    print(
        f"{'pruner':<19} {'epochs run / requested':>23} {'selected val':>12} {'test':>8} "
        f"{'at budget val':>13} {'test':>8}"
    )
    asked = sum(len(t["epochs"]) for t in trials)
    for p, r in full.items():
        at = best_within(r, budget)
        print(
            f"{p:<19} {sum(r['decisions']):>10} / {asked:<5} = {sum(r['decisions']) / asked:.2f} "
            f"{r['value'][0]:>+12.4f} {r['value'][1]:>+8.4f} {at[0]:>+13.4f} {at[1]:>+8.4f}"
        )
    for pruner in ("hyperband", "median"):
        ref = full[pruner]
        print(f"\npruner {pruner}:")
        print(
            f"{'policy':<10} {'val/train cost':>14} {'decisions differ':>17} {'epochs run':>10} "
            f"{'selected':>8} {'its val':>8} {'its test':>9}"
        )
        for policy in rec["policies"]:
            r = replay(rec, policy, pruner)
            differ = sum(a != b for a, b in zip(r["decisions"], ref["decisions"], strict=True))
            print(
                f"{policy:<10} {cost(rec, policy):>13.1%} {differ:>10} of {len(trials):<4} "
                f"{sum(r['decisions']):>10} {r['chosen']:>8} {r['value'][0]:>+8.4f} "
                f"{r['value'][1]:>+9.4f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(SAMPLE))
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="bench-records.json", help="where the records go")
    ap.add_argument("--replay", default=None, help="replay these saved records only")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.replay:
        rec = json.loads(Path(args.replay).read_text())
    else:
        rec = record(args)
        Path(args.out).write_text(json.dumps(rec))
        print(f"records: {args.out}")
    report(rec)


if __name__ == "__main__":
    main()
