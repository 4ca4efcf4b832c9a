"""Which data and budget choices let one fixed LSTM beat the simple baselines out of sample.

    python bench/defaults.py --data ../shared/data/cn_sse_mainboard.parquet

For each setting, one configuration (LSTM, hidden 32, time_steps 20, Adam lr 3e-3, batch 512,
6 epochs) is trained with seeds 0..N-1 and its best epoch chosen on validation; printed:
validation and test rank IC of the seeds' average, its ICIR on test, and the test rank IC
of the best simple baseline (chosen on validation) on the same rows. A study's selection
sits on top of this: the rows say where there is signal to select.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from data import DataConfig, Prepared, load_panel
from models import Member, TrainParams, fit, group
from models.lstm import RecurrentNet
from search.evaluate.verdict import build_verdict

SETTINGS: list[tuple[str, dict[str, object], int]] = [
    # (label, data settings, training windows per epoch)
    ("robust / zscore target", {"normalize": "robust", "target_cs": "zscore"}, 16384),
    ("cs_zscore / zscore target", {"normalize": "cs_zscore", "target_cs": "zscore"}, 16384),
    ("cs_rank / zscore target", {"normalize": "cs_rank", "target_cs": "zscore"}, 16384),
    ("cs_rank / rank target", {"normalize": "cs_rank", "target_cs": "rank"}, 16384),
    ("cs_rank / rank target, 4,096 windows", {"normalize": "cs_rank", "target_cs": "rank"}, 4096),
    ("cs_rank / rank target, 65,536 windows", {"normalize": "cs_rank", "target_cs": "rank"}, 65536),
    (
        "cs_rank / rank target, 262,144 windows",
        {"normalize": "cs_rank", "target_cs": "rank"},
        262144,
    ),
    ("cs_rank / rank target, all windows", {"normalize": "cs_rank", "target_cs": "rank"}, 0),
]


def run(path: str, label: str, settings: dict[str, object], windows: int, seeds: int) -> None:
    cfg = replace(DataConfig(path=path), **settings)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=20)
    p = TrainParams(
        time_steps=20,
        epochs=6,
        batch_size=512,
        lr=3e-3,
        weight_decay=1e-5,
        max_windows_per_epoch=windows,
        val_dates=48,
        seed=0,
    )
    members = [Member(-1, s) for s in range(seeds)]
    nets: list[torch.nn.Module] = []
    for m in members:
        torch.manual_seed(m.seed)
        nets.append(RecurrentNet(data.n_features, 1, 32, 1))
    model = group(nets, grouped=False)
    r = fit(model, data, p, members=members, keep_best=True, score=lambda v: -v["rank_ic"])
    assert r.best_state is not None
    model.load_state_dict(r.best_state)

    def predict(ends: torch.Tensor) -> torch.Tensor:
        from models import predict_members

        e = ends[None].expand(len(members), -1)
        folds = torch.full((len(members),), -1)
        return predict_members(model, data, e, folds, 20, 8192).mean(0)

    v = build_verdict(data, predict, tree=False)
    m, b = v["test"]["model"], v["test"][v["best_baseline"]]
    print(
        f"{label:<40} val {v['val']['model']['rank_ic']:+.4f}  test {m['rank_ic']:+.4f} "
        f"(ICIR {m['rank_icir']:+.3f})  best simple baseline {v['best_baseline']}: "
        f"{b['rank_ic']:+.4f} (ICIR {b['rank_icir']:+.3f})  {time.perf_counter() - t0:.0f}s",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--only", type=int, nargs="*", help="row numbers to run (default: all)")
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"{a.data}: one fixed LSTM, {a.seeds} seeds averaged, per setting")
    for i, (label, settings, windows) in enumerate(SETTINGS):
        if a.only is None or i in a.only:
            run(a.data, label, settings, windows, a.seeds)


if __name__ == "__main__":
    main()
