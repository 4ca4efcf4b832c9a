"""GPU figures in one run: grouped seeds vs seeds one after another (training steps/s),
float32 vs float16 autocast training steps, and the default study on a real panel timed
with 1, 2, 4 and 8 workers on the GPU and in each precision (trials/hour, share of the wall
time in the trials, GPU utilisation sampled by nvidia-smi).

    python bench/gpu.py --data ../shared/data/sp500_5yr.parquet --seconds 240
    python bench/gpu.py --data sp500_5yr.parquet --seconds 90 --skip-seeds --workers 1,2,4,8 \
        --precisions fp32,fp16

Prints figures; on a machine without CUDA it says so and exits.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from models import GroupedRecurrent, Members
from models.lstm import RecurrentNet
from models.train import make_scaler, train_step


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


def precision_bench() -> None:
    """Training steps/s of one network in float32 and under float16 autocast with a
    gradient scaler, and the dtype cuDNN's LSTM computed in."""
    print("one network: float32 vs float16 autocast (steps/s; dtype of the LSTM's output)")
    print(f"{'H':>4} {'L':>2} {'T':>3} {'B':>5} {'fp32':>8} {'fp16':>8} {'ratio':>6} {'dtype':>14}")
    for H, L, T, B in [
        (32, 1, 20, 1024),
        (64, 2, 20, 1024),
        (128, 2, 40, 2048),
        (256, 3, 60, 2048),
    ]:
        rates = {}
        dtype = None
        seen: list[torch.dtype] = []
        for amp in (False, True):
            torch.manual_seed(0)
            one = RecurrentNet(7, 1, H, L)
            net = Members([one]).cuda()
            opt = torch.optim.Adam(net.parameters(), lr=1e-3)
            scaler = make_scaler("fp16" if amp else "fp32", torch.device("cuda"))
            x = torch.randn(T, 1, B, 7, device="cuda")
            y = torch.randn(1, B, device="cuda")
            if amp:
                h = one.rnn.register_forward_hook(lambda m, i, o, s=seen: s.append(o[0].dtype))
            for i in range(35):
                if i == 5:
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                train_step(net, opt, scaler, x, lambda out, y=y: ((out - y) ** 2).mean(), 1.0)
            torch.cuda.synchronize()
            rates[amp] = 30 / (time.perf_counter() - t)
            if amp:
                h.remove()
                dtype = seen[-1]
        print(
            f"{H:>4} {L:>2} {T:>3} {B:>5} {rates[False]:>8.1f} {rates[True]:>8.1f} "
            f"{rates[True] / rates[False]:>6.2f} {str(dtype):>14}"
        )


def gpu_utilisation(stop: threading.Event, samples: list[float]) -> None:
    while not stop.is_set():
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.split()
            samples.append(statistics.mean(float(v) for v in out))
        except (OSError, ValueError, subprocess.SubprocessError):
            return
        stop.wait(0.5)


def study(data: str, seconds: int, out: str, workers: int = 1, precision: str = "fp32") -> None:
    """The default study on `data` for `seconds` with `workers` processes on the GPU(s)."""
    folder = Path(tempfile.mkdtemp(prefix="gpu-study-", dir=out))
    db = f"sqlite:///{folder}/gpu.db"
    root = Path(__file__).resolve().parent.parent
    toml = folder / "study.toml"
    text = (root / "studies" / "default.toml").read_text()
    text = text.replace('path = "../data/', f'path = "{root}/data/')
    text = text.replace("[budget]\n", f'[budget]\nprecision = "{precision}"\n', 1)
    toml.write_text(text)
    cmd = [
        sys.executable,
        "-m",
        "search.cli",
        "--config",
        str(toml),
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
        "--workers",
        str(workers),
        "-q",
        "--device",
        "cuda",
    ]
    stop = threading.Event()
    util: list[float] = []
    sampler = threading.Thread(target=gpu_utilisation, args=(stop, util), daemon=True)
    sampler.start()
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    stop.set()
    if r.returncode not in (0, 130):
        print(r.stderr[-3000:])
    import optuna

    st = optuna.load_study(study_name="gpu", storage=db)
    done = [x for x in st.trials if x.state.name in ("COMPLETE", "PRUNED")]
    train = sum(x.user_attrs.get("train_seconds", 0.0) for x in done)
    fit_train = sum(x.user_attrs.get("fit_train_seconds", 0.0) for x in done)
    epochs = sum(x.user_attrs.get("epochs_run", 0) for x in done)
    requested = sum(x.params.get("epochs", 10) for x in done) or 10 * len(done)
    best = st.best_value if any(x.state.name == "COMPLETE" for x in done) else float("nan")
    print(
        f"workers {workers}, {precision}: {len(done)} finished trials in {wall:.0f}s wall "
        f"({len(done) / wall * 3600:.0f} trials/hour); trials' own time {train:.0f}s "
        f"({train / (wall * workers):.0%} of workers x wall), training passes "
        f"{fit_train:.0f}s; epochs run {epochs} / requested {requested}; GPU utilisation "
        f"median {statistics.median(util) if util else float('nan'):.0f}%; best value {best:.4f}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--seconds", type=int, default=240, help="per timed study")
    ap.add_argument("--out", default=tempfile.gettempdir())
    ap.add_argument("--skip-seeds", action="store_true")
    ap.add_argument("--workers", default="1", help="comma list of worker counts, e.g. 1,2,4,8")
    ap.add_argument("--precisions", default="fp32", help="comma list: fp32,fp16")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return
    print(torch.__version__, torch.cuda.get_device_name(), "cuDNN", torch.backends.cudnn.version())
    if not a.skip_seeds:
        seeds_bench()
    if "fp16" in a.precisions:
        precision_bench()
    for precision in a.precisions.split(","):
        for k in a.workers.split(","):
            study(a.data, a.seconds, a.out, int(k), precision.strip())


if __name__ == "__main__":
    main()
