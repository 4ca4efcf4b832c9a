"""GPU figures in one run: grouped seeds vs seeds one after another (training steps/s), the
share of a trial spent training, and a timed default study on a real panel.

    python bench/gpu.py --data ../shared/data/sp500_5yr.parquet --seconds 240

Prints figures; on a machine without CUDA it says so and exits.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time

import torch

from models import GroupedRecurrent, Members
from models.lstm import RecurrentNet


def step_rate(model: torch.nn.Module, T: int, M: int, B: int, F: int, steps: int = 30) -> float:
    """Training steps per second (forward, backward, per-member clip, Adam)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(T, M, B, F, device="cuda")
    y = torch.randn(M, B, device="cuda")
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            t = time.perf_counter()
        loss = ((model(x) - y) ** 2).mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        model.clip_grad_norm_(1.0)  # type: ignore[operator]
        opt.step()
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - t)


def seeds_bench() -> None:
    print("seeds trained together: grouped LSTM vs one cuDNN LSTM after another")
    print(
        f"{'M':>3} {'H':>4} {'L':>2} {'T':>3} {'B':>5} {'seq steps/s':>12} {'grouped':>9} {'ratio':>6}"
    )
    for M, H, L, T, B in [
        (1, 32, 1, 20, 1024),
        (3, 32, 1, 20, 1024),
        (5, 32, 1, 20, 1024),
        (5, 64, 2, 20, 1024),
        (5, 128, 2, 40, 2048),
        (5, 256, 3, 60, 2048),
    ]:
        nets = []
        for s in range(M):
            torch.manual_seed(s)
            nets.append(RecurrentNet(7, 1, H, L))
        seq = step_rate(Members(copy.deepcopy(nets)).cuda(), T, M, B, 7)
        grp = step_rate(GroupedRecurrent(copy.deepcopy(nets)).cuda(), T, M, B, 7)
        print(f"{M:>3} {H:>4} {L:>2} {T:>3} {B:>5} {seq:>12.1f} {grp:>9.1f} {grp / seq:>6.2f}")


def study(data: str, seconds: int, out: str) -> None:
    db = f"sqlite:///{out}/gpu.db"
    cmd = [
        sys.executable,
        "-m",
        "search.cli",
        "--data",
        data,
        "--study-name",
        "gpu",
        "--storage",
        db,
        "--n-trials",
        "600",
        "--timeout",
        str(seconds),
        "--seed",
        "0",
        "-q",
        "--device",
        "cuda",
    ]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    print(r.stderr[-3000:])
    import optuna

    st = optuna.load_study(study_name="gpu", storage=db)
    done = [x for x in st.trials if x.state.name in ("COMPLETE", "PRUNED")]
    train = sum(x.user_attrs.get("train_seconds", 0.0) for x in done)
    epochs = sum(x.user_attrs.get("epochs_run", 0) for x in done)
    print(
        f"default study on {data}: {len(done)} finished trials in {wall:.0f}s wall "
        f"({len(done) / wall * 3600:.0f} trials/hour); trials' own time {train:.0f}s "
        f"({train / wall:.0%} of wall); epochs run {epochs}, requested "
        f"{sum(x.params.get('epochs', 10) for x in done) or 10 * len(done)}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--seconds", type=int, default=240)
    ap.add_argument("--out", default=".")
    ap.add_argument("--skip-seeds", action="store_true")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return
    print(torch.__version__, torch.cuda.get_device_name(), "cuDNN", torch.backends.cudnn.version())
    if not a.skip_seeds:
        seeds_bench()
    study(a.data, a.seconds, a.out)


if __name__ == "__main__":
    main()
