"""Run a study: one in-process worker, or N spawned worker processes on one study.

Signals (one handler, search.study.stop.SignalStop): the first SIGINT/SIGTERM asks every
worker to end its running trial (it is told to the storage as FAIL with the reason) and start
no other; a second one exits at once (a trial left RUNNING then is failed by the heartbeat,
or by the next run's start-up check). Worker processes ignore SIGINT (a terminal's Ctrl-C reaches the whole process group): the parent
passes the request on through a byte of shared memory that every worker polls with its
stop flag. A SIGTERM sent to a worker itself (e.g. by a service manager that signals the
whole group) also ends its trial; a second one exits it at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import optuna
import torch
from sqlalchemy.exc import SQLAlchemyError

from data import Panel, Prepared
from data.cache import load_cached_panel, save_panel
from models import Interrupted
from search.config.schema import RunConfig
from search.storage.rdb import (
    StorageError,
    StudyFull,
    StudyStorage,
    fail_stale,
    make_storage,
    scrub,
)
from search.storage.retry import error_line
from search.study.objective import Objective
from search.study.progress import Reporter, plural, trial_event
from search.study.pruners import make_sampler, resume_sampler, study_pruner
from search.study.stop import SignalStop, Stop, end_with_parent, stacks_on_sigusr1

try:
    from grpc import RpcError
except ImportError:  # the [grpc] extra is not installed: no proxy client either

    class RpcError(Exception):  # type: ignore[no-redef]
        pass


STORAGE_ERRORS = (SQLAlchemyError, optuna.exceptions.StorageInternalError, RpcError)

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


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
    storage: StudyStorage | None = None,
    started: int | None = None,
) -> None:
    """One worker's optimisation loop on the shared study.

    Returns when `n_trials` ran, `timeout` passed, a stop was requested, or the study holds
    `max_trials` COMPLETE or PRUNED trials. Raises StorageError (password masked) when the
    storage fails, and Interrupted (a KeyboardInterrupt) when a stop ended a running trial.
    `storage`: the process's storage of `url` (with `max_trials`), else one is opened here.
    `started`: the study's trials started when the run opened it (a seeded sampler's seed
    depends on it; None: counted here).
    """
    own = storage is None
    if storage is None:
        storage = open_storage(cfg, url, max_trials)
    objective = Objective(cfg, data, should_stop=stop)
    here = worker_name()
    current: dict[str, optuna.Trial] = {}

    def run_one(trial: optuna.Trial) -> float | list[float]:
        current["trial"] = trial
        # Which machine and process ran (or died on) the trial, for the dashboard.
        trial.set_user_attr("worker", here)
        return objective(trial)

    deadline = None if timeout is None else time.monotonic() + timeout
    ran = {"n": 0}

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        current.pop("trial", None)  # told: no longer this worker's running trial
        ran["n"] += 1
        on_trial(trial_event(trial))
        if stop():
            study.stop()

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.load_study(
            study_name=cfg.study.name,
            storage=storage,
            sampler=make_sampler(cfg, worker),
            pruner=study_pruner(cfg, data),
        )
        resume_sampler(study, cfg, worker, started)
        while not stop():
            left = None if n_trials is None else n_trials - ran["n"]
            secs = None if deadline is None else deadline - time.monotonic()
            if (left is not None and left <= 0) or (secs is not None and secs <= 0):
                return
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    study.optimize(
                        run_one,
                        n_trials=left,
                        timeout=secs,
                        catch=(Exception,),
                        callbacks=[callback],
                    )
                return
            except StudyFull as e:
                if not wait_for_room(study, storage, e.limit, stop, deadline):
                    return
            except (ValueError, AssertionError, optuna.exceptions.UpdateFinishedTrialError):
                # Telling the trial's end failed: was it finished elsewhere?
                if not _taken_away(storage, current.pop("trial", None)):
                    raise
    except KeyboardInterrupt:
        # Optuna told the running trial FAIL without calling back: said as this run's too
        ended = _ended_by_stop(storage, current.pop("trial", None))
        if ended is not None:
            on_trial(ended)
        raise
    except STORAGE_ERRORS as e:
        raise StorageError(f"storage failed: {scrub(error_line(e), url)}") from None
    finally:
        if own:
            storage.close()


def _ended_by_stop(storage: StudyStorage, trial: optuna.Trial | None) -> dict[str, Any] | None:
    """The event of the trial a stop (Ctrl-C, SIGTERM) ended, as the storage holds it (FAIL,
    with its reason); None when no trial was running or it is not failed there."""
    if trial is None:
        return None
    try:
        frozen = storage.get_trial(trial._trial_id)
    except Exception:  # the storage is gone: the study says what became of the trial
        return None
    return trial_event(frozen) if frozen.state == optuna.trial.TrialState.FAIL else None


def _taken_away(storage: StudyStorage, trial: optuna.Trial | None) -> bool:
    """Whether the trial this worker was running was failed under it (said if so): its
    heartbeat went stale while the worker was cut off from the storage, and a retry of its
    params was queued. Optuna's tell then fails on the finished trial (ValueError,
    UpdateFinishedTrialError, or its own "Should not reach" AssertionError)."""
    if trial is None or trial.number is None:
        return False
    if storage.get_trial(trial._trial_id).state != optuna.trial.TrialState.FAIL:
        return False
    print(
        f"optuna-run: trial {trial.number} was failed by its heartbeat while this worker "
        "could not reach the storage; a retry runs its params again",
        file=sys.stderr,
        flush=True,
    )
    return True


def open_storage(cfg: RunConfig, url: str, max_trials: int | None) -> StudyStorage:
    """The storage of a run of `cfg` at `url`: its heartbeat and retries, the trial cap."""
    st = cfg.storage
    return make_storage(
        url,
        heartbeat_interval=st.heartbeat_interval,
        grace_period=st.grace_period,
        max_retry=st.max_retry,
        max_trials=max_trials,
    )


EXITED = "interrupted (SIGINT/SIGTERM), exited at once"


def exited_line(failed: int, grace_period: int, url: str) -> str:
    """What a second Ctrl-C says (on stderr and in the log) as it exits at once: the
    trials it told FAIL, and what becomes of one the storage was not told of in time
    (through the proxy, the proxy's own grace period applies)."""
    told = f"{plural(failed, 'running trial')} of this run told FAIL"
    after = "its heartbeat is stale" if url.startswith("grpc://") else f"{grace_period}s"
    return (
        f"optuna-run: exited at once (status 130): {told}; one left RUNNING is failed "
        f"after {after}, as a killed worker's"
    )


def worker_name(pid: int | None = None) -> str:
    """The `worker` user attr of the trials a process runs: host:pid."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def exit_at_once(cfg: RunConfig, url: str, workers: set[str], say: Callable[[str], None]) -> None:
    """A second Ctrl-C's last work before the exit: the running trials of `workers` told
    FAIL (`fail_left_running`), then the exit line said (`exited_line`)."""
    say(exited_line(fail_left_running(cfg, url, workers), cfg.storage.grace_period, url))


def fail_left_running(cfg: RunConfig, url: str, workers: set[str], wait_s: float = 3.0) -> int:
    """Before a second Ctrl-C exits at once: tell the study's RUNNING trials of `workers`
    (their `worker` user attr) as FAIL, reason EXITED unless one is set, on a connection of
    their own, within `wait_s` seconds (else the heartbeat fails them later, as it would a
    killed worker's). Returns how many were failed in time."""
    import threading

    done = {"n": 0}

    def work() -> None:
        storage = open_storage(cfg, url, None)
        try:
            study_id = storage.get_study_id_from_name(cfg.study.name)
            running = storage.get_all_trials(
                study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
            )
            for t in running:
                if t.user_attrs.get("worker") not in workers:
                    continue
                if "fail_reason" not in t.user_attrs:
                    storage.set_trial_user_attr(t._trial_id, "fail_reason", EXITED)
                storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
                done["n"] += 1
        except Exception:  # best effort: the heartbeat is the guarantee
            pass
        finally:
            with contextlib.suppress(Exception):
                storage.close()

    thread = threading.Thread(target=work, name="fail-left-running", daemon=True)
    thread.start()
    thread.join(wait_s)
    return done["n"]


def wait_for_room(
    study: optuna.Study,
    storage: StudyStorage,
    max_trials: int,
    stop: Stop,
    deadline: float | None,
) -> bool:
    """The study holds `max_trials` trials, some still RUNNING: wait for them to end.

    Returns True when there is room again (a running trial failed, or a dead worker's trial
    was failed by its heartbeat and queued for a retry), False once `max_trials` trials are
    COMPLETE or PRUNED (or on a stop or the timeout). So the study reaches its count even
    when the worker of one of its last trials dies.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    interval = storage.heartbeat_interval or 2
    while True:
        fail_stale(study)
        if storage.count(study_id, FINISHED) >= max_trials:
            return False
        if storage.count(study_id) < max_trials:
            return True
        if stop() or (deadline is not None and time.monotonic() >= deadline):
            return False
        time.sleep(min(1.0, interval / 2))


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
    parent: int = 0  # the pid of the `optuna-run` that started this worker
    started: int | None = None  # the study's trials started when the run opened it


def _worker_main(spec: WorkerSpec, events: Any, stop_flag: Any) -> None:
    # SIGINT and SIGTERM arrive ignored (inherited from the parent while it started the
    # workers): install the handler first, then look at the parent's stop flag, so a stop
    # requested while this process was starting is not missed. Events go to the parent
    # through this worker's own pipe: a worker killed mid-write corrupts nothing shared.
    stop = Stop(stop_flag)

    def send(event: dict[str, Any]) -> None:  # to a parent that may be gone (killed)
        with contextlib.suppress(BrokenPipeError, EOFError, OSError):
            events.send(event)

    SignalStop(stop, signals=(signal.SIGTERM,)).install()
    end_with_parent(spec.parent, stop)  # a killed optuna-run leaves no worker running on
    stacks_on_sigusr1()
    torch.set_num_threads(spec.threads)
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    try:
        if stop():
            raise Interrupted("stop requested before the first trial")
        panel = load_cached_panel(Path(spec.cache))
        data = Prepared(
            panel,
            spec.cfg.data,
            torch.device(spec.device),
            eval_time_steps=int(spec.cfg.space.max("time_steps")),
        )
        run_trials(
            spec.cfg,
            spec.url,
            data,
            n_trials=spec.n_trials,
            timeout=spec.timeout,
            max_trials=spec.max_trials,
            on_trial=send,
            stop=stop,
            worker=spec.worker,
            started=spec.started,
        )
    except Interrupted:
        send({"worker_exit": spec.worker, "interrupted": True})
        sys.exit(130)
    except Exception as e:
        msg = scrub(f"{type(e).__name__}: {e}", spec.url)
        send({"worker_exit": spec.worker, "error": msg})
        sys.exit(1)
    send({"worker_exit": spec.worker, "interrupted": stop.requested})


def cpu_count() -> int:
    """CPU cores this process may run on (its affinity, e.g. a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def torch_threads(workers: int = 1) -> int:
    """Torch CPU threads for each of `workers` local processes: $OMP_NUM_THREADS when set
    (e.g. several worker containers on one host), else this process's cores divided among
    them. More threads than cores makes small models many times slower, not faster."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, cpu_count() // workers)


def devices_for(device: str, n: int) -> list[str]:
    if device == "cuda":
        count = max(torch.cuda.device_count(), 1)
        return [f"cuda:{i % count}" for i in range(n)]
    return [device] * n


def split_trials(n_trials: int | None, n: int) -> list[int | None]:
    if n_trials is None:
        return [None] * n
    return [n_trials // n + (1 if i < n_trials % n else 0) for i in range(n)]


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def _gather(
    readers: list[Connection], reporter: Reporter, exited: set[int], errors: list[str]
) -> bool:
    """The workers' events until every pipe is closed: trials to the reporter, each worker's
    exit into `exited` (its error into `errors`); True when a worker was interrupted."""
    interrupted = False
    live = list(readers)
    while live:
        for r in wait(live, timeout=0.5):
            assert isinstance(r, Connection)
            try:
                ev = r.recv()
            except (EOFError, OSError):
                live.remove(r)
                continue
            if "worker_exit" in ev:
                exited.add(ev["worker_exit"])
                if ev.get("error"):
                    errors.append(f"worker {ev['worker_exit']}: {ev['error']}")
                interrupted |= bool(ev.get("interrupted"))
            else:
                reporter.trial(ev)
    return interrupted


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
    started: int | None = None,
) -> tuple[bool, list[str]]:
    """Spawn `workers` processes on the study; returns (interrupted, worker errors).
    `started`: the study's trials started when the run opened it (see `run_trials`).

    A worker that dies without saying why (SIGKILL, the kernel's OOM killer) is reported as
    an error; its running trial stays RUNNING until the heartbeat's grace period passes,
    then the next trial start (here or on any machine) fails it and queues its params again.
    """
    cache_root.mkdir(parents=True, exist_ok=True)
    cache = Path(tempfile.mkdtemp(prefix="panel-", dir=cache_root))
    save_panel(panel, cache)
    ctx = mp.get_context("spawn")
    stop_flag = ctx.RawValue("b", 0)
    threads = torch_threads(workers) if device == "cpu" else 1
    shares = split_trials(n_trials, workers)
    procs: dict[int, Any] = {}
    pipes: dict[int, tuple[Connection, Connection]] = {}
    for i, dev in enumerate(devices_for(device, workers)):
        if shares[i] == 0:
            continue
        spec = WorkerSpec(
            cfg,
            url,
            str(cache),
            dev,
            threads,
            shares[i],
            timeout,
            max_trials,
            i,
            os.getpid(),
            started,
        )
        pipes[i] = ctx.Pipe(duplex=False)
        procs[i] = ctx.Process(target=_worker_main, args=(spec, pipes[i][1], stop_flag))

    def say(name: str) -> None:
        reporter.write(
            f"{name}: ending the running trials (FAIL) and stopping; "
            "press Ctrl-C again to exit at once"
        )
        stop_flag.value = 1  # each worker ends its trial at its next batch

    def kill_all() -> None:
        for p in procs.values():
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGKILL)
        shutil.rmtree(cache, ignore_errors=True)
        exit_at_once(
            cfg, url, {worker_name(p.pid) for p in procs.values() if p.pid}, reporter.write
        )

    handler = SignalStop(Stop(), on_first=say, at_exit=kill_all)
    errors: list[str] = []
    exited: set[int] = set()
    # The workers inherit SIGINT and SIGTERM ignored; each installs its own SIGTERM handler.
    handler.ignore()
    try:
        for i, p in procs.items():
            p.start()
            pipes[i][1].close()  # the worker holds the writing end: EOF when it is gone
        handler.install()
        interrupted = _gather([pipes[i][0] for i in procs], reporter, exited, errors)
        for i, p in procs.items():
            p.join()
            if i not in exited:
                errors.append(
                    f"worker {i} {_death(p.exitcode)}; a trial it was running is failed and "
                    f"retried once its heartbeat is {cfg.storage.grace_period}s old"
                )
    finally:
        handler.restore()
        try:
            # workers started and not joined (a start or the gathering failed): told to stop,
            # given the grace period all together, then killed
            left = [p for p in procs.values() if p.pid is not None and p.exitcode is None]
            if left:
                stop_flag.value = 1
                wait = cfg.storage.grace_period
                reporter.write(f"stopping {len(left)} worker(s), up to {wait:.0f}s")
                deadline = time.monotonic() + wait
                for p in left:
                    p.join(max(0.0, deadline - time.monotonic()))
                for p in left:
                    if p.exitcode is None:
                        p.kill()
                        p.join()
        finally:
            for reader, writer in pipes.values():
                reader.close()
                writer.close()
            shutil.rmtree(cache, ignore_errors=True)
    return interrupted or handler.hits > 0, errors
