"""One run of a study in this process: the study's data loaded and checked, its storage and
study opened once, its trials run by this process or by spawned workers, what is said on the
way (to stderr). `run` is the whole of it, for the CLI and the Python API alike.

Stages, each raising before the next starts: `check_url` (a storage that cannot be used fails
before the data are loaded), `prepare` (ConfigError, DataError), `open_run` (StorageError,
IncompatibleStudy, DashboardError), then `execute`, whose storage failures and workers'
errors are returned in the Outcome, after the run's summary.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data import ConfigError
from data.errors import plural

if TYPE_CHECKING:
    import optuna

    from data import Panel, Prepared
    from search.config.schema import RunConfig
    from search.dashboard import Background
    from search.study.progress import Reporter

SEED_MAX = 2**32 - 1  # what the samplers (NumPy's legacy seeding) take
INTERRUPTED_LINE = (
    "optuna-run: interrupted; rerun the same command to resume the study (it runs its "
    "--n-trials or --timeout again; --max-trials N caps the study at N trials in all)"
)


def check_seed(seed: Any, where: str, workers: int) -> None:
    """The study's seed (flag or config) is one every worker's sampler takes: worker k of
    --workers N seeds its sampler with seed + k, which must stay <= SEED_MAX."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError([f"{where}: expected a seed from 0 to {SEED_MAX}, got {seed!r}"])
    if seed + workers - 1 > SEED_MAX:
        raise ConfigError(
            [
                f"{where} {seed} with --workers {workers}: worker k seeds its sampler "
                f"with {seed} + k; expected a seed from 0 to {SEED_MAX - workers + 1}"
            ]
        )


def auto_workers(device: str, cfg: Any, data: Any) -> int:
    """--workers auto on this device (see search.study.autoworkers); 1 with a warning when the
    measurement cannot run."""
    from search.study.autoworkers import choose, middle_shape

    kind = "cuda" if device.startswith("cuda") else "cpu"
    if device.startswith("cuda:"):
        print(
            f"optuna-run: --workers auto with --device {device}: every worker on that GPU",
            file=sys.stderr,
        )
    try:
        return choose(
            kind,
            middle_shape(
                cfg.space,
                data.n_features,
                members=cfg.search.seeds * data.n_folds,
                precision=cfg.budget.precision,
            ),
            log=lambda line: print(f"optuna-run: {line}", file=sys.stderr, flush=True),
            single_gpu=device if device.startswith("cuda:") else None,
        )
    except Exception as e:  # a measurement that failed must not stop the study
        print(
            f"optuna-run: warning: --workers auto could not measure ({type(e).__name__}: {e}); "
            "running 1 worker",
            file=sys.stderr,
        )
        return 1


def tempfile_root(need: int = 0) -> str:
    """Where the workers' copy of the panel goes: /dev/shm (memory) when it is writable and
    has room for `need` bytes and a quarter more (a container's /dev/shm is often 64 MB),
    else the temporary folder."""
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        try:
            if shutil.disk_usage(shm).free >= need * 1.25:
                return str(shm)
        except OSError:
            pass
    return tempfile.gettempdir()


def say(line: str) -> None:
    print(line, file=sys.stderr)


@dataclass
class Plan:
    """A study ready to run: its config, device, data (dropped before workers are spawned),
    the data's fingerprint and the worker count (`--workers auto` resolved)."""

    cfg: RunConfig
    device: str
    panel: Panel
    data: Prepared | None
    fingerprint: str
    workers: int
    loaded_s: float


@dataclass
class Outcome:
    """What a run did: the study, whether a signal stopped it, the errors that ended it or its
    workers (after their trials were recorded)."""

    study: optuna.Study
    interrupted: bool
    errors: list[str] = field(default_factory=list)


class RunError(RuntimeError):
    """Worker processes of `run_study` failed (e.g. one was killed); the trials they and the
    others finished are in `study`, the errors in `errors`."""

    def __init__(self, study: optuna.Study, errors: list[str]) -> None:
        self.study = study
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


def prepare(
    cfg: RunConfig,
    *,
    device: str,
    workers: int | str,
    seed_where: str,
    warn: Callable[[str], None] | None = None,
) -> Plan:
    """Load and check the study's data on `device` (a resolved name: cpu, cuda, cuda:N);
    `warn` takes each DataWarning's message (else they are Python warnings). Raises
    ConfigError or DataError before any storage is opened."""
    import torch

    from data import Prepared, fingerprint, load_panel
    from data.load import DataWarning
    from search.study.objective import check_data
    from search.study.progress import data_steps

    check_seed(cfg.search.seed, seed_where, 1 if workers == "auto" else int(workers))
    t0 = time.perf_counter()
    loud = data_steps(cfg.data.file, say)
    with warnings.catch_warnings(record=warn is not None) as caught:
        if warn is not None:
            warnings.simplefilter("always", DataWarning)
        panel = load_panel(cfg.data, say=loud)
    for w in caught or []:
        assert warn is not None
        warn(str(w.message))
    if loud:
        loud(f"tensors on {device}, the windows and the file's fingerprint...")
    steps = int(cfg.space.max("time_steps"))
    data = Prepared(
        panel,
        cfg.data,
        torch.device(device if device != "cuda" else "cuda:0"),
        eval_time_steps=steps,
    )
    check_data(data, cfg)
    fp = fingerprint(cfg.data)
    loaded_s = time.perf_counter() - t0
    if workers == "auto":
        workers = auto_workers(device, cfg, data)
        check_seed(cfg.search.seed, seed_where, workers)
    return Plan(cfg, device, panel, data, fp, int(workers), loaded_s)


def start_lines(plan: Plan, url: str) -> list[str]:
    """What a run says before it opens the storage: study, data, space notes, device, objective."""
    from data.panel import describe as describe_panel
    from search.storage.rdb import describe
    from search.study.notes import start_lines as space_lines

    cfg, data = plan.cfg, plan.data
    assert data is not None
    info = describe_panel(plan.panel)
    S = info["securities"]
    # one series: the metrics are the correlations over the dates (models.metrics)
    series = "; one series: correlations over the validation dates, not per date" if S == 1 else ""
    return [
        f"optuna-run: study {cfg.study.name!r}, storage {describe(url)}",
        f"data: {plan.panel.source} -> {plural(info['dates'], 'date')} x {S:,} "
        f"{'security' if S == 1 else 'securities'} x "
        f"{plural(info['features'], 'feature')} ({info['first_date']} .. {info['last_date']}), "
        f"split train/val/test = {len(data.split.train)}/{len(data.split.val)}/"
        f"{len(data.split.test)} dates, loaded in {plan.loaded_s:.1f}s",
        *space_lines(cfg, data),
        f"device: {plan.device}"
        + (" ([cpu] limits apply: a CPU-sized space and budget)" if cfg.cpu_limits else ""),
        f"objective: {cfg.study.objective} ({', '.join(cfg.study.directions)}{series}); "
        f"{cfg.search.seeds} seed(s) x {data.n_folds} fold(s) per trial; validation rows: "
        f"windows of {data.eval_time_steps} valid dates, the same for every trial"
        + ("; several objectives: no pruning" if cfg.study.multi else ""),
    ]


def same_reading(study: optuna.Study, cfg: Any, data: Any, fingerprint: str) -> None:
    """Refuse to resume a study whose file and settings (the same fingerprint) now resolve
    to other features or another split than when it was made (a later version reads them
    otherwise, e.g. a label a pattern matched is now left out): its new trials would solve
    another problem than its old ones."""
    from search.study.create import IncompatibleStudy
    from search.study.notes import data_summary

    old = study.user_attrs.get("data")
    if not isinstance(old, dict) or old.get("fingerprint") != fingerprint:
        return
    new = data_summary(cfg, data, fingerprint)
    dates = {k: (v.get("first"), v.get("last")) for k, v in (old.get("split") or {}).items()}
    now = {k: (v.get("first"), v.get("last")) for k, v in new["split"].items()}
    what = []
    if old.get("features") is not None and old["features"] != new["features"]:
        gone = [f for f in old["features"] if f not in new["features"]]
        added = [f for f in new["features"] if f not in old["features"]]
        what.append(f"features (now without {gone[:5]}, with {added[:5]})")
    if dates and dates != now:
        what.append(f"the split (made with {dates}, now {now})")
    if what:
        raise IncompatibleStudy(
            f"study {study.study_name!r}: this file and these settings now resolve to other "
            f"{' and '.join(what)} than when the study was made: its new trials would not be "
            "comparable with its old ones; choose another --study-name"
        )


def stale_line(numbers: list[int], grace_period: int) -> str:
    """What a run says of the trials it failed at its start: RUNNING, with no heartbeat for
    over the grace period (their worker was killed, or its machine went away)."""
    which = plural(len(numbers), "trial") + " " + ", ".join(map(str, numbers[:10]))
    return (
        f"stale: {which}{' ...' if len(numbers) > 10 else ''} RUNNING with no heartbeat for "
        f"over {grace_period}s (a worker killed or cut off): failed, "
        f"{'their' if len(numbers) > 1 else 'its'} params queued again (up to [storage] "
        "max_retry times)"
    )


@dataclass
class Opened:
    """The run's storage (the one this process uses), its study, the dashboard beside it."""

    storage: Any
    study: optuna.Study
    dashboard: Background | None
    stale: list[int] = field(default_factory=list)  # trials failed at the start: no heartbeat


def open_run(plan: Plan, url: str, *, max_trials: int | None, dashboard: int | None) -> Opened:
    """Open the storage once and the study in it (created, or checked against the plan's),
    with the dashboard's port bound first: a busy one stops the run before a study is
    created. Raises StorageError, IncompatibleStudy or DashboardError."""
    from search.dashboard import Background, make_dashboard
    from search.storage.rdb import fail_stale
    from search.study.create import open_study
    from search.study.notes import annotate_study
    from search.study.pruners import make_sampler, study_pruner
    from search.study.runner import open_storage

    cfg = plan.cfg
    assert plan.data is not None
    server = None
    try:
        if dashboard is not None:
            server = make_dashboard(url, port=dashboard, flag="--dashboard")
        # max_trials is refused here, early, for a grpc:// storage
        storage = open_storage(cfg, url, max_trials)
        study = open_study(
            storage,
            cfg,
            plan.fingerprint,
            make_sampler(cfg),
            study_pruner(cfg, plan.data),
        )
        same_reading(study, cfg, plan.data, plan.fingerprint)
        annotate_study(study, cfg, plan.data, plan.fingerprint, plan.device)
        stale = fail_stale(study)
    except BaseException:
        if server is not None:
            server.server_close()
        raise
    return Opened(storage, study, None if server is None else Background(server), stale)


def execute(
    plan: Plan,
    opened: Opened,
    url: str,
    *,
    n_trials: int | None,
    timeout: float | None,
    max_trials: int | None,
    reporter: Reporter,
) -> tuple[bool, list[str]]:
    """Run the trials: in this process on the opened storage (one worker), else in spawned
    workers (each opens its own). Returns (interrupted, errors)."""
    import torch

    from data.cache import panel_bytes
    from search.storage.rdb import StorageError
    from search.study.pruners import started_trials
    from search.study.runner import (
        exit_at_once,
        run_parallel,
        run_trials,
        torch_threads,
        worker_name,
    )
    from search.study.stop import SignalStop, Stop, trials_began

    trials_began.set()
    # counted once, for a seeded sampler (every worker's seed sees the same count)
    started = started_trials(opened.study) if plan.cfg.search.seed is not None else 0
    if plan.workers > 1:
        plan.data = None  # the workers prepare their own; none held here (a GPU's memory)
        return run_parallel(
            plan.cfg,
            url,
            plan.panel,
            workers=plan.workers,
            device=plan.device,
            n_trials=n_trials,
            timeout=timeout,
            max_trials=max_trials,
            reporter=reporter,
            cache_root=Path(tempfile_root(panel_bytes(plan.panel))),
            started=started,
        )
    assert plan.data is not None
    stop = Stop()

    def on_first(name: str) -> None:
        reporter.write(
            f"{name}: ending the running trial (FAIL) and stopping; "
            "press Ctrl-C again to exit at once"
        )

    interrupted = False
    errors: list[str] = []
    torch.set_num_threads(torch_threads())

    def at_exit() -> None:  # a second Ctrl-C: the running trial told FAIL if it can be
        exit_at_once(plan.cfg, url, {worker_name()}, reporter.write)

    with SignalStop(stop, on_first=on_first, at_exit=at_exit):
        try:
            run_trials(
                plan.cfg,
                url,
                plan.data,
                n_trials=n_trials,
                timeout=timeout,
                max_trials=max_trials,
                on_trial=reporter.trial,
                stop=stop,
                storage=opened.storage,
                started=started,
            )
        except KeyboardInterrupt:
            interrupted = True
        except StorageError as e:
            errors.append(str(e))
    return interrupted or stop.requested, errors


def run(
    plan: Plan,
    url: str,
    *,
    n_trials: int | None,
    timeout: float | None,
    max_trials: int | None,
    dashboard: int | None,
    quiet: bool,
    echo: bool = True,
) -> Outcome:
    """Open the storage and study of a prepared plan, run its trials with a progress bar and a
    log beside the study, and say the summary. `n_trials` None and no `timeout`: 100.
    `quiet`: no bar or status lines; `echo` False: no line on stderr at all (the log has
    them all)."""
    import optuna

    from search.study.progress import Reporter, append_log, log_path

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = plan.cfg
    said = list(start_lines(plan, url))
    for line in said if echo else []:
        say(line)
    opened = open_run(plan, url, max_trials=max_trials, dashboard=dashboard)
    if opened.stale:
        said.append(stale_line(opened.stale, cfg.storage.grace_period))
        if echo:
            say(said[-1])
    if opened.dashboard is not None:
        said.append(f"dashboard: {opened.dashboard.url} (stops with the search)")
        if echo:
            say(said[-1])
    total = n_trials if n_trials or timeout else 100
    log = log_path(url, cfg.study.name)
    said.append(f"log: {log}")
    if echo:
        say(said[-1])
    append_log(log, said)  # the log holds every line of the run, these first
    reporter = Reporter(total, cfg.study.direction, quiet=quiet or not echo, log=log, echo=echo)
    reporter.start_from(opened.study)  # a resumed study's best, from the first status line
    try:
        interrupted, errors = execute(
            plan,
            opened,
            url,
            n_trials=total,
            timeout=timeout,
            max_trials=max_trials,
            reporter=reporter,
        )
    finally:
        reporter.close()
        if opened.dashboard is not None:
            opened.dashboard.stop()
    study = optuna.load_study(study_name=cfg.study.name, storage=opened.storage)
    said = [reporter.summary(study, url, interrupted, max_trials)]
    from search.study.luck import format_luck, record_luck

    luck = record_luck(study)
    if luck is not None:
        said.append(format_luck(luck))
    said += [f"optuna-run: worker error: {err}" for err in errors]
    for line in said if echo else []:
        say(line)
    # the CLI says the interrupted line itself; the log has it too
    append_log(log, said + ([INTERRUPTED_LINE] if interrupted else []))
    return Outcome(study, interrupted, errors)
