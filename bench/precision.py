"""Training arithmetic on this machine: the same trials in float32 and under bfloat16
autocast (and float16 on a GPU), their training time and their value.

    python bench/precision.py --data ../shared/data/cn_sse_mainboard.parquet --trials 8
    python bench/precision.py --device cuda --precisions fp32,bf16,fp16

Trials of the default study's space (CPU-sized on a CPU; params drawn by a seeded random
sampler), each fitted as a trial is (its budget, its seed, the best epoch by the per-epoch
report) once per precision. Printed per trial: training seconds and the trial's value (the
objective on every validation date at its best epoch) per precision; then the median time
ratio against float32 and the mean difference of the values with its paired standard error.
"""

from __future__ import annotations

import argparse
import math
import statistics
import warnings
from dataclasses import replace
from pathlib import Path

import optuna
import torch

from data import Prepared, load_panel
from models import Member, fit
from search.config.schema import build_config
from search.study.objective import make_members, selection_score, train_params

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "sp500_sample.parquet"
KEY = "rank_ic"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(SAMPLE))
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", default="fp32,bf16")
    a = ap.parse_args()
    precisions = [p.strip() for p in a.precisions.split(",")]
    device = torch.device(a.device)
    cfg = build_config(
        None,
        cpu=device.type == "cpu",
        flags={"data": {"path": a.data}, "search": {"seed": a.seed}},
    )
    warnings.filterwarnings("ignore")
    panel = load_panel(cfg.data)
    data = Prepared(panel, cfg.data, device, eval_time_steps=int(cfg.space.max("time_steps")))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=a.seed))
    score = selection_score(cfg.study.objective)
    print(
        f"{Path(panel.source).name}, {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; value = validation {KEY} at the best epoch"
    )
    print(
        f"{'trial':>5} {'T':>3} {'L':>2} {'H':>4} {'B':>5} "
        + " ".join(f"{p + ' s':>8} {p + ' value':>11}" for p in precisions)
    )
    rows = []
    for i in range(a.trials):
        trial = study.ask()
        p = cfg.space.suggest(trial)
        seed = a.seed * 100_003 + i
        members = [Member(-1, seed)]
        row = {}
        for precision in precisions:
            tp = replace(train_params(p, cfg.budget, seed), precision=precision)
            r = fit(make_members(p, data, members), data, tp, members=members, score=score)
            train_s = sum(e.train_seconds for e in r.history)
            row[precision] = (train_s, r.best.val[KEY])
        study.tell(trial, row[precisions[0]][1])
        rows.append(row)
        print(
            f"{i:>5} {p.time_steps:>3} {p.num_layers:>2} {p.hidden_dim:>4} {p.batch_size:>5} "
            + " ".join(f"{row[q][0]:>8.1f} {row[q][1]:>+11.4f}" for q in precisions),
            flush=True,
        )
    base = precisions[0]
    for q in precisions[1:]:
        ratio = statistics.median(r[q][0] / r[base][0] for r in rows)
        diff = [r[q][1] - r[base][1] for r in rows]
        se = statistics.stdev(diff) / math.sqrt(len(diff)) if len(diff) > 1 else math.nan
        print(
            f"{q} against {base}: training time x{ratio:.2f} (median of {len(rows)} trials); "
            f"value {statistics.mean(diff):+.4f} on average (paired standard error {se:.4f})"
        )


if __name__ == "__main__":
    main()
