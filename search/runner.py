"""Run a study: one in-process worker, or N spawned worker processes on one study.

Signals: the first SIGINT/SIGTERM asks every worker to end its running trial (it is told to
the storage as FAIL with the reason) and start no other; a second one exits at once (a trial
left RUNNING then is failed by the heartbeat, or by the next run's start-up check).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from data import Panel, Prepared
from models import Interrupted
from search.config import RunConfig
from search.objective import Objective
from search.report import Reporter, trial_event
from search.storage import make_storage

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def make_sampler(cfg: RunConfig, worker: int = 0) -> optuna.samplers.BaseSampler:
    s = cfg.search
    seed = None if s.seed is None else s.seed + worker
    samplers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    return samplers[s.sampler]()


def make_pruner(cfg: RunConfig) -> optuna.pruners.BasePruner:
    # The resource is the epoch; its maximum is set from the epochs range, never "auto".
    max_epochs = int(cfg.space.max("epochs"))
    pruners: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(max_epochs, 2), reduction_factor=3
        ),
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    return pruners[cfg.search.pruner]()


class Stop:
    """A stop request, set from a signal handler and polled between batches."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def __call__(self) -> bool:
        return self.requested


def study_full(study: optuna.Study, max_trials: int | None) -> bool:
    """True once finished (COMPLETE/PRUNED) plus RUNNING trials reach `max_trials`.

    Running trials count so that concurrent workers, on any machine, do not overshoot.
    """
    if not max_trials:
        return False
    states = FINISHED + (optuna.trial.TrialState.RUNNING,)
    return len(study.get_trials(deepcopy=False, states=states)) >= max_trials


def run_trials(
    cfg: RunConfig,
    url: str,
    data: Prepared,
    *,
    n_trials: int | None,
    timeout: float | None,
    max_trials: int | None,
    on_trial: Callable[[dict[str, Any]], None],
    stop: Stop,
    worker: int = 0,
) -> None:
    """One worker's optimisation loop on the shared study."""
    st = cfg.storage
    storage = make_storage(
        url, heartbeat_interval=st.heartbeat_interval, grace_period=st.grace_period,
        max_retry=st.max_retry,
    )
    study = optuna.load_study(
        study_name=cfg.study.name, storage=storage, sampler=make_sampler(cfg, worker),
        pruner=make_pruner(cfg),
    )
    if study_full(study, max_trials):
        return

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        on_trial(trial_event(trial))
        if stop() or study_full(study, max_trials):
            study.stop()

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(
            Objective(cfg, data, should_stop=stop),
            n_trials=n_trials,
            timeout=timeout,
            catch=(Exception,),
            callbacks=[callback],
        )


# ---------------------------------------------------------------- worker processes


@dataclass(frozen=True)
class WorkerSpec:
    cfg: RunConfig
    url: str
    cache: str
    device: str
    threads: int
    n_trials: int | None
    timeout: float | None
    max_trials: int | None
    worker: int


def save_panel(panel: Panel, folder: Path) -> None:
    """Write the panel as .npy files; workers memory-map them (one copy in RAM on a CPU)."""
    np.save(folder / "values.npy", panel.values)
    np.save(folder / "target.npy", panel.target)
    np.save(folder / "valid.npy", panel.valid)
    np.save(folder / "dates.npy", panel.dates)
    np.save(folder / "ids.npy", panel.ids)
    if panel.weight is not None:
        np.save(folder / "weight.npy", panel.weight)
    (folder / "features.txt").write_text("\n".join(panel.feature_names))
    (folder / "source.txt").write_text(panel.source)


def load_cached_panel(folder: Path) -> Panel:
    w = folder / "weight.npy"
    return Panel(
        values=np.load(folder / "values.npy", mmap_mode="r"),
        target=np.load(folder / "target.npy"),
        valid=np.load(folder / "valid.npy"),
        dates=np.load(folder / "dates.npy"),
        ids=np.load(folder / "ids.npy"),
        feature_names=(folder / "features.txt").read_text().split("\n"),
        weight=np.load(w) if w.exists() else None,
        source=(folder / "source.txt").read_text(),
    )


def _worker_main(spec: WorkerSpec, events: Any) -> None:
    stop = Stop()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent relays Ctrl-C as SIGTERM

    def on_term(signum: int, _: Any) -> None:
        if stop.requested:
            os._exit(130)
        stop.requested = True

    signal.signal(signal.SIGTERM, on_term)
    torch.set_num_threads(spec.threads)
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    try:
        panel = load_cached_panel(Path(spec.cache))
        data = Prepared(panel, spec.cfg.data, torch.device(spec.device))
        run_trials(
            spec.cfg, spec.url, data, n_trials=spec.n_trials, timeout=spec.timeout,
            max_trials=spec.max_trials, on_trial=events.put, stop=stop, worker=spec.worker,
        )
    except Interrupted:
        events.put({"worker_exit": spec.worker, "interrupted": True})
        sys.exit(130)
    except Exception as e:
        events.put({"worker_exit": spec.worker, "error": f"{type(e).__name__}: {e}"})
        sys.exit(1)
    events.put({"worker_exit": spec.worker})


def devices_for(device: str, n: int) -> list[str]:
    if device == "cuda":
        count = max(torch.cuda.device_count(), 1)
        return [f"cuda:{i % count}" for i in range(n)]
    return [device] * n


def split_trials(n_trials: int | None, n: int) -> list[int | None]:
    if n_trials is None:
        return [None] * n
    return [n_trials // n + (1 if i < n_trials % n else 0) for i in range(n)]


def run_parallel(
    cfg: RunConfig,
    url: str,
    panel: Panel,
    *,
    workers: int,
    device: str,
    n_trials: int | None,
    timeout: float | None,
    max_trials: int | None,
    reporter: Reporter,
    cache_root: Path,
) -> tuple[bool, list[str]]:
    """Spawn `workers` processes on the study; returns (interrupted, worker errors)."""
    cache_root.mkdir(parents=True, exist_ok=True)
    cache = Path(tempfile.mkdtemp(prefix="panel-", dir=cache_root))
    save_panel(panel, cache)
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers) if device == "cpu" else 1
    shares = split_trials(n_trials, workers)
    procs = []
    for i, dev in enumerate(devices_for(device, workers)):
        if shares[i] == 0:
            continue
        spec = WorkerSpec(cfg, url, str(cache), dev, threads, shares[i], timeout, max_trials, i)
        procs.append(ctx.Process(target=_worker_main, args=(spec, events), daemon=False))
    signals = {"n": 0}

    def on_signal(signum: int, _: Any) -> None:
        signals["n"] += 1
        if signals["n"] == 1:
            reporter.write(
                f"{signal.Signals(signum).name}: ending the running trials (FAIL) and stopping; "
                "press Ctrl-C again to exit at once"
            )
            for p in procs:
                if p.is_alive() and p.pid:
                    os.kill(p.pid, signal.SIGTERM)
        else:
            for p in procs:
                if p.is_alive() and p.pid:
                    os.kill(p.pid, signal.SIGKILL)
            shutil.rmtree(cache, ignore_errors=True)
            os._exit(130)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    errors: list[str] = []
    interrupted = False
    try:
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs) or not events.empty():
            try:
                ev = events.get(timeout=0.2)
            except queue.Empty:
                continue
            if "worker_exit" in ev:
                if ev.get("error"):
                    errors.append(f"worker {ev['worker_exit']}: {ev['error']}")
                interrupted |= bool(ev.get("interrupted"))
            else:
                reporter.trial(ev)
        for p in procs:
            p.join()
        time.sleep(0)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        shutil.rmtree(cache, ignore_errors=True)
    return interrupted or signals["n"] > 0, errors
