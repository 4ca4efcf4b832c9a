"""What the verdict's baselines cost on a wide panel: ridge and the tree fit on every training
window (up to 2 million).

    python bench/baselines_time.py [--stocks 1000] [--dates 1000] [--factors 150] [--repeat 3]

Writes the synthetic factor panel of bench/wide.py (market-like gaps, a given target), loads
it as the default study would (`--features 'f*'`, per-date ranked features and target),
then fits ridge and LightGBM `--repeat` times as the verdict does, printing each fit's
seconds, the median and the training windows used.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import write_panel  # noqa: E402

from data import DataConfig, Prepared, load_panel  # noqa: E402
from models.baselines import FIT_ROWS, lgbm_baseline, ridge_baseline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stocks", type=int, default=1000)
    ap.add_argument("--dates", type=int, default=1000)
    ap.add_argument("--factors", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--time-steps", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wide.parquet"
        write_panel(path, a.stocks, a.dates, a.factors)
        cfg = DataConfig(
            path=str(path),
            id="symbol",
            target="target",
            features=("f*",),
            normalize="cs_rank",
            target_cs="rank",
        )
        data = Prepared(load_panel(cfg), cfg, torch.device("cpu"), a.time_steps)
    tr, va = data.ends("train", a.time_steps), data.ends("val", a.time_steps)
    print(
        f"{a.stocks} stocks x {a.dates} dates x {data.n_features} features: "
        f"{len(tr):,} training windows ({min(len(tr), FIT_ROWS):,} fitted), "
        f"{len(va):,} validation; torch threads {torch.get_num_threads()}"
    )
    for name, fit in (("ridge", ridge_baseline), ("lgbm", lgbm_baseline)):
        secs = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            fit(data, tr, va)
            secs.append(time.perf_counter() - t0)
        print(
            f"{name:<6} fit: median {statistics.median(secs):.1f} s "
            f"({', '.join(f'{s:.1f}' for s in secs)})",
            flush=True,
        )


if __name__ == "__main__":
    main()
