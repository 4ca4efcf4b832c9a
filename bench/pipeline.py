"""The whole pipeline a quant runs, timed, and the final model against the tree.

    python bench/pipeline.py --data ../shared/data/cn_sse_mainboard.parquet

Runs the CLI as a user would, in a fresh SQLite study under --dir: `optuna-run` (the default
study, --trials trials), `optuna-run confirm --top K --seeds N [--final]`, `optuna-run train`
(the final fit of [final]; --no-final skips it); then, unless --no-extra, `train --exact`
(the winner at the search's budget) and `train --ensemble K --seeds 1` (the K confirmed
configurations, one final-fit network each). Prints the wall time of each step and one table of test daily rank IC (ICIR) on the
same rows: each fitted model, the verdict's LightGBM, ridge, the best price signal, the
model's 50/50 blend with the tree; then the study's PBO and deflated Sharpe.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

SIGNALS = ("reversal_1", "momentum_5", "momentum_20")


def step(label: str, args: list[str], log: Path) -> float:
    """Run `optuna-run ARGS`, its output appended to `log`; its wall time."""
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write(f"\n$ optuna-run {' '.join(args)}\n")
        f.flush()
        rc = subprocess.call(
            [sys.executable, "-m", "search.cli", *args], stdout=f, stderr=subprocess.STDOUT
        )
    secs = time.perf_counter() - t0
    print(f"{label:<34} {secs:7.0f} s" + ("" if rc == 0 else f"  (exit {rc}, see {log})"))
    if rc != 0:
        sys.exit(rc)
    return secs


def test_row(verdict: dict[str, Any], name: str) -> str:
    m = verdict["test"].get(name) or next(
        (v for k, v in verdict["test"].items() if k.startswith(name)), None
    )
    return "n/a" if m is None else f"{m['rank_ic']:+.4f} ({m['rank_icir']:.2f})"


def table(fits: dict[str, Path]) -> list[str]:
    rows = [
        "| fit | model | lgbm | ridge | best price signal | blend with lgbm | corr. with lgbm |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, path in fits.items():
        v = torch.load(path, weights_only=True)["verdict"]
        test = v["test"]
        sig = max((k for k in test if k.split(" ")[0] in SIGNALS), key=lambda k: test[k]["rank_ic"])
        nxt = v.get("next") or {}
        blend = (nxt.get("rank_ic") or {}).get("blend")
        corr = nxt.get("correlation")
        rows.append(
            f"| {label} | {test_row(v, 'model')} | {test_row(v, 'lgbm')} | "
            f"{test_row(v, 'ridge')} | {sig} {test[sig]['rank_ic']:+.4f} | "
            + ("n/a" if blend is None else f"{blend:+.4f}")
            + " | "
            + ("n/a" if corr is None else f"{corr:.2f}")
            + " |"
        )
        rows.append(f"|  | {v.get('summary', '')} |||||||")
    return rows


def luck_line(storage: str, name: str) -> str:
    import optuna

    from search.study.luck import format_luck

    study = optuna.load_study(study_name=name, storage=storage)
    return format_luck(study.user_attrs.get("luck") or {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--dir", default="", help="work folder (default: a new temporary one)")
    ap.add_argument("--config", default="", help="study TOML (default: the default study)")
    ap.add_argument("--no-extra", action="store_true", help="skip train --exact and --ensemble")
    ap.add_argument(
        "--confirm-final",
        action="store_true",
        help="confirm at the final fit's budget (confirm --final, --seeds seeds)",
    )
    ap.add_argument(
        "--no-final",
        action="store_true",
        help="skip the final fit of the winner (with the extras: only --exact and --ensemble)",
    )
    a = ap.parse_args()
    work = Path(a.dir or tempfile.mkdtemp(prefix="pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "steps.log"  # the CLI output (the study keeps its own NAME.log beside it)
    storage = f"sqlite:///{work.resolve()}/study.db"
    name = "pipeline"
    common = ["--study-name", name, "--storage", storage]
    cfg = ["--config", a.config] if a.config else []
    print(f"{a.data}: {a.trials} trials, confirm top {a.top} x {a.seeds} seeds; log {log}")
    print(f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    run = [*cfg, "--data", a.data, *common, "--n-trials", str(a.trials), "--seed", str(a.seed)]
    times = {"search": step("search", run, log)}
    final = ["--final"] if a.confirm_final else []
    times["confirm"] = step(
        "confirm", ["confirm", *common, "--top", str(a.top), "--seeds", str(a.seeds), *final], log
    )
    fits: dict[str, Path] = {}
    if not a.no_final:
        fits["final fit (train)"] = work / "final.pt"
        times["final fit"] = step(
            "final fit (train)", ["train", *common, "--out", str(fits["final fit (train)"])], log
        )
        total = sum(times.values())
        print(f"{'pipeline (search + confirm + fit)':<34} {total:7.0f} s = {total / 60:.1f} min")
    if not a.no_extra:
        fits["search budget (train --exact)"] = work / "exact.pt"
        step("train --exact", ["train", *common, "--exact", "--out", str(work / "exact.pt")], log)
        ens = f"ensemble of {a.top} (train --ensemble {a.top} --seeds 1)"
        fits[ens] = work / "ensemble.pt"
        step(
            f"train --ensemble {a.top} --seeds 1",
            ["train", *common, "--ensemble", str(a.top), "--seeds", "1", "--out", str(fits[ens])],
            log,
        )
    print()
    print("\n".join(table(fits)))
    print()
    print(luck_line(storage, name))
    (work / "times.json").write_text(json.dumps(times))


if __name__ == "__main__":
    main()
