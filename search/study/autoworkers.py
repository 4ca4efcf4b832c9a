"""`--workers auto`: the number of worker processes this machine trains fastest with,
measured, not guessed.

A small LSTM leaves most of a GPU idle (kernel launches, not arithmetic, bound it), so
several processes per GPU train more windows per second in all than one; on a CPU, k
processes with cores/k torch threads each can beat one process with every core, or not,
depending on the shapes. The measurement: k processes started together, each training a
trial of the middle of the study's space (middle time_steps, layers, hidden size and batch
of the [space]; the study's seeds x folds networks, in its [budget] precision, with the
torch threads a worker of k would get) on random windows of the study's feature count for a
few seconds; the total training windows per second of k = 1, 2, 4, ... (per GPU, times the
GPUs; on a CPU up to the cores) are compared and the smallest k within 5% of the best is
taken (fewer processes hold less memory and fewer database connections). Counts are tried
in increasing order until one is slower than the best by more than that margin. What it
leaves out: validation, the search's own time and the storage, a few percent of a trial
(bench/RESULTS.md).

The result is kept in a small JSON file per machine ($XDG_CACHE_HOME/optuna-run, else
~/.cache/optuna-run) under the device, the torch version, the cores and the shape, so a
second run on the same machine and space starts at once; figures that other work on the
machine skewed (two measurements of one process far apart: PLAUSIBLE, UNSTEADY) are used for
the run but not kept.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOLERANCE = 0.05  # counts within this share of the best rate count as the best
MAX_PER_GPU = 8
# k processes on a CPU measured faster than this many times k x one process's rate: the one
# process may have been slowed by other work on the machine (its threads waiting on busy
# cores), so it is measured again; where the two measurements of one process differ by more
# than UNSTEADY of the larger, the machine is busy: the figures are used, not kept
PLAUSIBLE = 2.0
UNSTEADY = 0.5


@dataclass(frozen=True)
class Shape:
    """The LSTM a calibration process trains."""

    time_steps: int
    num_layers: int
    hidden_dim: int
    batch_size: int
    n_features: int
    members: int = 1  # networks a trial trains together (seeds x folds)
    precision: str = "fp32"

    def key(self) -> str:
        return (
            f"T{self.time_steps}-L{self.num_layers}-H{self.hidden_dim}"
            f"-B{self.batch_size}-F{self.n_features}-M{self.members}-{self.precision}"
        )


def _middle(param: Any) -> float:
    """The middle of a [space] param: its value, the median of its choices, or the middle
    of its range (geometric for a log range)."""
    if param.choices is not None:
        values = sorted(param.choices)
        return float(values[(len(values) - 1) // 2])
    if param.fixed:
        return float(param.value)
    lo, hi = float(param.low), float(param.high)
    return math.sqrt(lo * hi) if param.log and lo > 0 else (lo + hi) / 2


def middle_shape(space: Any, n_features: int, members: int = 1, precision: str = "fp32") -> Shape:
    p = space.params
    return Shape(
        time_steps=max(1, round(_middle(p["time_steps"]))),
        num_layers=max(1, round(_middle(p["num_layers"]))),
        hidden_dim=max(1, round(_middle(p["hidden_dim"]))),
        batch_size=max(1, round(_middle(p["batch_size"]))),
        n_features=n_features,
        members=max(1, members),
        precision=precision,
    )


def candidates(device: str, cores: int, gpus: int) -> list[int]:
    """Worker counts to try, smallest first: 1, 2, 4, ... per GPU times the GPUs; on a
    CPU, powers of two up to the cores (each worker gets cores / k threads)."""
    if device == "cuda":
        per = [1, 2, 4, 8]
        return [k * max(gpus, 1) for k in per if k <= MAX_PER_GPU]
    out, k = [], 1
    while k <= max(cores, 1):
        out.append(k)
        k *= 2
    return out


def _probe(
    device: str,
    threads: int,
    shape: Shape,
    seconds: float,
    barrier: Any,
    results: Any,
    index: int,
) -> None:
    """One calibration process: train the shape on random windows for `seconds` once every
    process is ready; put the windows trained per second on `results`."""
    import torch

    from models.ensemble import Members
    from models.lstm import RecurrentNet
    from models.train import PRECISIONS, make_optimizer, make_scaler, train_step

    try:
        torch.set_num_threads(threads)
        dev = torch.device(device)
        torch.manual_seed(index)
        M, B = shape.members, shape.batch_size
        net = Members(
            [
                RecurrentNet(shape.n_features, 1, shape.hidden_dim, shape.num_layers)
                for _ in range(M)
            ]
        ).to(dev)
        opt = make_optimizer("adam", net.parameters(), 1e-3, 0.0, dev)
        x = torch.randn(shape.time_steps, M, B, shape.n_features, device=dev)
        y = torch.randn(M, B, device=dev)
        precision = shape.precision if dev.type == "cuda" or shape.precision == "bf16" else "fp32"
        scaler, amp = make_scaler(precision, dev), PRECISIONS[precision]

        def step() -> None:  # the step models.train.fit takes
            train_step(net, opt, scaler, x, lambda out: ((out - y) ** 2).mean(1).sum(), 1.0, amp)

        for _ in range(3):  # warm-up: allocations, kernel selection
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        barrier.wait(timeout=120)
        t0 = time.perf_counter()
        steps = 0
        while True:
            step()
            steps += 1
            if steps % 4 == 0:
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                if time.perf_counter() - t0 >= seconds:
                    break
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        results.put((index, steps * M * B / (time.perf_counter() - t0), None))
    except Exception as e:  # reported to the parent, which gives up on auto
        results.put((index, 0.0, f"{type(e).__name__}: {e}"))


def measure(
    device: str,
    k: int,
    shape: Shape,
    gpus: int,
    seconds: float,
    single_gpu: str | None = None,
) -> float:
    """Total training windows per second of k processes training `shape` together (on
    the GPUs in turn, or all on `single_gpu`)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(k)
    results = ctx.Queue()
    from search.study.runner import torch_threads

    threads = torch_threads(k) if device == "cpu" else 1  # as run_parallel gives them
    procs = []
    for i in range(k):
        dev = single_gpu or (f"cuda:{i % max(gpus, 1)}" if device == "cuda" else "cpu")
        p = ctx.Process(target=_probe, args=(dev, threads, shape, seconds, barrier, results, i))
        p.start()
        procs.append(p)
    rates: list[float] = []
    problems: list[str] = []
    try:
        for _ in range(k):
            _, rate, problem = results.get(timeout=180 + seconds)
            rates.append(rate)
            if problem:
                problems.append(problem)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    if problems:
        raise RuntimeError(problems[0])
    return sum(rates)


def pick(rates: dict[int, float]) -> int:
    """The smallest count within TOLERANCE of the best rate."""
    best = max(rates.values())
    return min(k for k, r in rates.items() if r >= (1 - TOLERANCE) * best)


def cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "optuna-run" / "workers.json"


def machine_key(
    device: str, shape: Shape, cores: int, gpus: int, single_gpu: str | None = None
) -> str:
    import torch

    if device == "cuda":
        name = torch.cuda.get_device_name(torch.device(single_gpu or "cuda:0"))
        what = f"cuda x{gpus} {name}"
    else:
        what = f"cpu x{cores}"
    return f"{what} | torch {torch.__version__} | {shape.key()}"


def _plausible(rates: dict[int, float], k: int) -> bool:
    """Whether k CPU processes' rate is at most PLAUSIBLE x k times one process's."""
    return rates[k] <= PLAUSIBLE * k * rates.get(1, math.inf)


def choose(
    device: str,
    shape: Shape,
    *,
    seconds: float = 3.0,
    log: Any = None,
    cache: Path | None = None,
    single_gpu: str | None = None,
) -> int:
    """The worker count for `device` ("cpu" or "cuda", every GPU; or only `single_gpu`, a
    "cuda:N") and `shape`: from the cache, else measured (and cached). `log` gets one line
    saying what was measured and chosen."""
    import torch

    from search.study.runner import cpu_count

    cores = cpu_count()
    gpus = (1 if single_gpu else torch.cuda.device_count()) if device == "cuda" else 0
    cache = cache or cache_file()
    key = machine_key(device, shape, cores, gpus, single_gpu)
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    hit = known.get(key)
    if isinstance(hit, dict) and isinstance(hit.get("workers"), int) and hit["workers"] > 0:
        if log:
            log(f"--workers auto: {hit['workers']} (measured earlier on this machine; {cache})")
        return int(hit["workers"])
    busy = False  # other work on the machine skewed the figures
    rates: dict[int, float] = {}
    for k in candidates(device, cores, gpus):
        rates[k] = measure(device, k, shape, gpus, seconds, single_gpu)
        if device == "cpu" and k > 1 and not busy and not _plausible(rates, k):
            again = measure(device, 1, shape, gpus, seconds, single_gpu)
            busy = abs(again - rates[1]) > UNSTEADY * max(again, rates[1])
            rates[1] = max(rates[1], again)
        if rates[k] < (1 - TOLERANCE) * max(rates.values()):
            break  # past the best: more processes only compete
    chosen = pick(rates)
    if log:
        figures = ", ".join(f"{k}: {r:,.0f}" for k, r in rates.items())
        log(
            f"--workers auto: {chosen} (training windows/s in all, by worker count: {figures}; "
            f"LSTM T={shape.time_steps} layers={shape.num_layers} hidden={shape.hidden_dim} "
            f"batch={shape.batch_size}, {shape.members} network(s) a trial, {shape.precision})"
            + (
                "; the machine was busy with other work, so the figures are used for this "
                "run only, not kept"
                if busy
                else ""
            )
        )
    if busy:
        return chosen
    known[key] = {"workers": chosen, "rates": {str(k): r for k, r in rates.items()}}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(cache)
    except OSError:
        pass  # measured again next time
    return chosen
