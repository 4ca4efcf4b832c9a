"""`optuna-run`: run a study (default), or `optuna-run export` its best trial, `train`,
`predict`, or `proxy` (the gRPC storage proxy)."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data import ConfigError, DataError
from search.cli.common import (
    DEVICES_HELP,
    Parser,
    fail,
    out_problem,
    resolve_device,
    stacks_on_sigusr1,
)

SEED_MAX = 2**32 - 1  # what the samplers (NumPy's legacy seeding) take
PORT_MAX = 65535

# argparse type functions: argparse names the flag ("argument --n-trials: ..."), so the
# messages say only what was expected and what was given; every flag is checked while the
# arguments are parsed, before any storage is opened or any file written


def _int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None


def _positive_int(s: str) -> int:
    v = _int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def _workers(s: str) -> int | str:
    if s.strip().lower() == "auto":
        return "auto"
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or auto, got {s!r}")
    return v


def _nonnegative_int(s: str) -> int:
    v = _int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _seed(s: str) -> int:
    v = _int(s)
    if not 0 <= v <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to {SEED_MAX}, got {v}")
    return v


def _port(s: str) -> int:
    v = _int(s)
    if not 0 <= v <= PORT_MAX:
        raise argparse.ArgumentTypeError(
            f"expected a port from 0 to {PORT_MAX} (0 picks a free one), got {v}"
        )
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {s!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {s!r}")
    return v


def _out_file(s: str) -> str:
    problem = out_problem(s)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return s


def _out_folder(s: str) -> str:
    problem = out_problem(s, folder=True)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return s


def _table_file(s: str) -> str:
    if Path(s).suffix not in (".csv", ".parquet"):
        raise argparse.ArgumentTypeError(f"expected a .csv or .parquet file name, got {s!r}")
    return _out_file(s)


def run_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run",
        description="Search LSTM hyperparameters on market panel data with Optuna. "
        "Subcommands: `optuna-run export` (best trial to JSON), `optuna-run train` (retrain "
        "the best params, save the model), `optuna-run predict` (predictions from a model), "
        "`optuna-run dashboard` (optuna-dashboard on the storage), `optuna-run report` "
        "(HTML and PNG figures of a study), `optuna-run proxy` (a gRPC storage proxy that "
        "workers reach with --storage grpc://HOST:PORT).",
    )
    p.add_argument(
        "--n-trials",
        type=_positive_int,
        default=None,
        help="trials this invocation runs in all (default: until --timeout, or 100)",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        help="stop starting trials after this many seconds",
    )
    p.add_argument("--study-name", default=None, help="study name (default: [study] name)")
    p.add_argument(
        "--storage",
        default=None,
        help="storage URL (default: $OPTUNA_STORAGE, else sqlite:///studies/optuna.db)",
    )
    p.add_argument("--data", default=None, help="Parquet or CSV file (default: the config's)")
    p.add_argument("--config", default=None, help="study TOML (default: studies/default.toml)")
    p.add_argument("--sampler", default=None, help="tpe (default) or random")
    p.add_argument(
        "--pruner", default=None, help="hyperband (default), successive_halving, median or none"
    )
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    p.add_argument(
        "--seed",
        type=_seed,
        default=None,
        help=f"seed for a reproducible study (0 to {SEED_MAX})",
    )
    p.add_argument(
        "--objective",
        default=None,
        help="trial value: val_loss, rank_ic, ic, icir, rank_icir, sharpe, mse_skill, "
        "r2_weighted, utility, accuracy, log_loss, auc, ...; comma-separated for several",
    )
    p.add_argument(
        "--seeds",
        type=_positive_int,
        default=None,
        help="models per trial with consecutive seeds; the value is their mean",
    )
    p.add_argument(
        "--folds",
        type=_positive_int,
        default=None,
        help="walk-forward folds trained in lockstep (default: [data] folds, 1)",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes on this machine (default 1); auto: the count that trains "
        "fastest here, measured once per machine and space (several per GPU)",
    )
    p.add_argument(
        "--max-trials",
        type=_positive_int,
        default=None,
        help="stop starting trials once the study holds this many finished trials",
    )
    d = p.add_argument_group("data columns (override the config's [data] table)")
    d.add_argument("--date", default=None, help="time-axis column")
    d.add_argument("--id", default=None, help="security column ('' for a single series)")
    d.add_argument("--target", default=None, help="target column (default: forward return)")
    d.add_argument("--features", default=None, help="comma-separated names or globs")
    d.add_argument("--horizon", type=_positive_int, default=None)
    d.add_argument("--task", default=None, help="regression or classification")
    p.add_argument(
        "--dashboard",
        type=_port,
        nargs="?",
        const=8080,
        default=None,
        metavar="PORT",
        help="serve optuna-dashboard on 127.0.0.1:PORT (default 8080) while the search runs",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def dashboard_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run dashboard",
        description="Serve optuna-dashboard on the study storage (Ctrl-C stops it).",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="storage URL (default: $OPTUNA_STORAGE, else sqlite:///studies/optuna.db)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080; 0 = a free one)")
    return p


def report_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run report",
        description="Write a study's figures: one self-contained HTML file and PNGs.",
    )
    p.add_argument("--study-name", default=None, help="(default: the storage's only study)")
    p.add_argument(
        "--storage",
        default=None,
        help="storage URL (default: $OPTUNA_STORAGE, else sqlite:///studies/optuna.db)",
    )
    p.add_argument(
        "--out",
        type=_out_folder,
        default=None,
        help="folder to write (default studies/<study>-report)",
    )
    return p


def export_parser() -> argparse.ArgumentParser:
    p = Parser(prog="optuna-run export", description="Write a study's best trial as JSON.")
    p.add_argument("--study-name", required=True)
    p.add_argument("--out", type=_out_file, required=True, help="JSON file to write")
    p.add_argument(
        "--storage",
        default=None,
        help="storage URL (default: $OPTUNA_STORAGE, else sqlite:///studies/optuna.db)",
    )
    p.add_argument(
        "--trials",
        type=_table_file,
        default=None,
        help="also write every trial to this .csv/.parquet",
    )
    return p


def cmd_run(argv: list[str]) -> int:
    args = run_parser().parse_args(argv)
    import optuna
    import torch

    from data import Prepared, fingerprint, load_panel
    from data.load import DataWarning
    from data.panel import describe as describe_panel
    from search.config.schema import build_config, default_config_path
    from search.dashboard import Background, DashboardError, make_dashboard
    from search.storage.rdb import (
        StorageError,
        check_url,
        describe,
        fail_stale,
        make_storage,
        resolve_url,
    )
    from search.study.create import IncompatibleStudy, open_study
    from search.study.notes import annotate_study, start_lines
    from search.study.objective import check_data
    from search.study.progress import Reporter, log_path
    from search.study.pruners import make_pruner, make_sampler
    from search.study.runner import Stop, run_parallel, run_trials, torch_threads

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_url(args.storage)
    try:
        check_url(url)  # a storage that cannot be used fails before the data are loaded
    except StorageError as e:
        return fail(str(e))
    try:
        device = resolve_device(args.device)
        flags: dict[str, dict[str, Any]] = {
            "study": {"name": args.study_name, "objective": args.objective},
            "search": {
                "sampler": args.sampler,
                "pruner": args.pruner,
                "seed": args.seed,
                "seeds": args.seeds,
            },
            "data": {
                "path": args.data,
                "date": args.date,
                "id": (args.id or None) if args.id is not None else None,
                "target": args.target,
                "features": [f.strip() for f in args.features.split(",") if f.strip()]
                if args.features
                else None,
                "horizon": args.horizon,
                "task": args.task,
                "folds": args.folds,
            },
        }
        cfg = build_config(
            Path(args.config) if args.config else None, cpu=device == "cpu", flags=flags
        )
        if args.id == "":
            from dataclasses import replace

            cfg = replace(cfg, data=replace(cfg.data, id=None))
        toml = Path(args.config) if args.config else default_config_path()
        where = "--seed" if args.seed is not None else f"{toml}: [search] seed"
        check_seed(cfg.search.seed, where, 1 if args.workers == "auto" else args.workers)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            panel = load_panel(cfg.data)
        for w in caught:
            print(f"optuna-run: warning: {w.message}", file=sys.stderr)
        data = Prepared(
            panel,
            cfg.data,
            torch.device(device if device != "cuda" else "cuda:0"),
            eval_time_steps=int(cfg.space.max("time_steps")),
        )
        check_data(data, cfg)
        fp = fingerprint(cfg.data)
        loaded_s = time.perf_counter() - t0
        if args.workers == "auto":
            args.workers = auto_workers(device, cfg, data)
            check_seed(cfg.search.seed, where, args.workers)
    except (ConfigError, DataError) as e:
        return fail(str(e))
    info = describe_panel(panel)
    print(f"optuna-run: study {cfg.study.name!r}, storage {describe(url)}", file=sys.stderr)
    print(
        f"data: {panel.source} -> {info['dates']} dates x {info['securities']} securities x "
        f"{info['features']} features ({info['first_date']} .. {info['last_date']}), "
        f"split train/val/test = {len(data.split.train)}/{len(data.split.val)}/"
        f"{len(data.split.test)} dates, loaded in {loaded_s:.1f}s",
        file=sys.stderr,
    )
    for line in start_lines(cfg, data):
        print(line, file=sys.stderr)
    print(
        f"device: {device}"
        + (" ([cpu] limits apply: a CPU-sized space and budget)" if cfg.cpu_limits else ""),
        file=sys.stderr,
    )
    print(
        f"objective: {cfg.study.objective} ({', '.join(cfg.study.directions)}); "
        f"{cfg.search.seeds} seed(s) x {data.n_folds} fold(s) per trial; validation rows: "
        f"windows of {data.eval_time_steps} valid dates, the same for every trial"
        + ("; several objectives: no pruning" if cfg.study.multi else ""),
        file=sys.stderr,
    )
    server = None
    try:
        # the dashboard's port first: a busy one stops the run before a study is created
        if args.dashboard is not None:
            server = make_dashboard(url, port=args.dashboard, flag="--dashboard")
        st = cfg.storage
        storage = make_storage(
            url,
            heartbeat_interval=st.heartbeat_interval,
            grace_period=st.grace_period,
            max_retry=st.max_retry,
            max_trials=args.max_trials,  # refused here, early, for a grpc:// storage
        )
        study = open_study(storage, cfg, fp, make_sampler(cfg), make_pruner(cfg))
        annotate_study(study, cfg, data, fp, device)
        fail_stale(study)
    except (StorageError, IncompatibleStudy, DashboardError) as e:
        if server is not None:
            server.server_close()
        return fail(str(e))
    dashboard = None if server is None else Background(server)
    if dashboard is not None:
        print(f"dashboard: {dashboard.url} (stops with the search)", file=sys.stderr)
    n_trials = args.n_trials if args.n_trials or args.timeout else 100
    log = log_path(url, cfg.study.name)
    print(f"log: {log}", file=sys.stderr)
    reporter = Reporter(n_trials, cfg.study.direction, quiet=args.quiet, log=log)
    interrupted = False
    errors: list[str] = []
    if args.workers == 1:
        stop = Stop()
        hits = {"n": 0}

        def on_signal(signum: int, _: Any) -> None:
            hits["n"] += 1
            if hits["n"] > 1:
                os._exit(130)
            stop.requested = True
            reporter.write(
                f"{signal.Signals(signum).name}: ending the running trial (FAIL) "
                "and stopping; press Ctrl-C again to exit at once"
            )

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        torch.set_num_threads(torch_threads())
        try:
            run_trials(
                cfg,
                url,
                data,
                n_trials=n_trials,
                timeout=args.timeout,
                max_trials=args.max_trials,
                on_trial=reporter.trial,
                stop=stop,
            )
        except KeyboardInterrupt:
            interrupted = True
        except StorageError as e:
            errors.append(str(e))
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        interrupted |= stop.requested
    else:
        del data
        interrupted, errors = run_parallel(
            cfg,
            url,
            panel,
            workers=args.workers,
            device=device,
            n_trials=n_trials,
            timeout=args.timeout,
            max_trials=args.max_trials,
            reporter=reporter,
            cache_root=Path(tempfile_root()),
        )
    reporter.close()
    if dashboard is not None:
        dashboard.stop()
    study = optuna.load_study(study_name=cfg.study.name, storage=storage)
    print(reporter.summary(study, url, interrupted), file=sys.stderr)
    for err in errors:
        print(f"optuna-run: worker error: {err}", file=sys.stderr)
    if interrupted:
        print(
            "optuna-run: interrupted; rerun the same command to resume the study", file=sys.stderr
        )
        return 130
    return 1 if errors else 0


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


def tempfile_root() -> str:
    import tempfile

    shm = Path("/dev/shm")
    return str(shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir()))


def train_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run train",
        description="Retrain the best trial's params of a study and save the model.",
    )
    p.add_argument("--study-name", required=True)
    p.add_argument(
        "--out",
        type=_out_file,
        default=None,
        help="checkpoint file (default studies/<study>-model.pt)",
    )
    p.add_argument("--storage", default=None, help="storage URL (as for a run)")
    p.add_argument("--data", default=None, help="train on this file instead of the study's")
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    p.add_argument(
        "--trial",
        type=_nonnegative_int,
        default=None,
        help="trial number (default: the confirmed winner, else the best trial)",
    )
    p.add_argument(
        "--seed",
        type=_seed,
        default=None,
        help="train with this seed instead of the trial's own (no longer a reproduction)",
    )
    p.add_argument(
        "--ensemble",
        type=_positive_int,
        default=1,
        help="average the K best (confirmed) configurations x their seeds",
    )
    p.add_argument(
        "--seeds",
        type=_positive_int,
        default=None,
        help="train N seeds of each configuration (its seed, seed + 1, ...) and average "
        "them, as confirm measures; a reproduction only when N is the study's seeds",
    )
    p.add_argument("--no-tree", action="store_true", help="leave the LightGBM baseline out")
    return p


def confirm_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run confirm",
        description="Re-train the K best trials with fresh seeds; name the winner by the mean.",
    )
    p.add_argument("--study-name", required=True)
    p.add_argument("--storage", default=None, help="storage URL (as for a run)")
    p.add_argument("--top", type=_positive_int, default=5, help="trials (default 5)")
    p.add_argument("--seeds", type=_positive_int, default=5, help="seeds (default 5)")
    p.add_argument("--seed", type=_seed, default=None, help="first fresh seed")
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    p.add_argument("--no-tree", action="store_true", help="leave the LightGBM baseline out")
    return p


def predict_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run predict",
        description="Predict with a trained model: one row per (date, id) window end.",
    )
    p.add_argument("--model", required=True, help="checkpoint from `optuna-run train`")
    p.add_argument("--data", default=None, help="Parquet/CSV file (default: the training file)")
    p.add_argument("--out", type=_out_file, required=True, help="predictions .csv or .parquet")
    p.add_argument(
        "--dates",
        default="last",
        choices=["last", "test", "all"],
        help="last date only (a submission), the test segment, or every date",
    )
    p.add_argument("--date", default=None, help="time-axis column of --data (default: the model's)")
    p.add_argument("--id", default=None, help="security column of --data ('' for one series)")
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    return p


# verb -> (its parser, the module and function that do its work)
VERBS: dict[str, tuple[Callable[[], argparse.ArgumentParser], str, str]] = {
    "export": (export_parser, "search.evaluate.export", "run_export"),
    "train": (train_parser, "search.cli.train_predict", "run_train"),
    "predict": (predict_parser, "search.cli.train_predict", "run_predict"),
    "confirm": (confirm_parser, "search.evaluate.confirm", "run_confirm"),
    "dashboard": (dashboard_parser, "search.dashboard", "run_dashboard"),
    "report": (report_parser, "search.evaluate.report", "run_report"),
}


def run_verb(name: str, argv: list[str]) -> int:
    """Parse the verb's flags, then import and call the module that does its work."""
    import importlib

    parser, module, func = VERBS[name]
    args = parser().parse_args(argv)
    return int(getattr(importlib.import_module(module), func)(args))


def proxy_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run proxy",
        description="Serve a storage to many workers through Optuna's gRPC storage proxy; "
        "workers run `optuna-run --storage grpc://HOST:PORT`. Plain gRPC: listen on a "
        "private network only.",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="database URL (default: $OPTUNA_STORAGE, else sqlite:///studies/optuna.db)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=13000, help="port (default 13000; 0 = any free)")
    p.add_argument(
        "--max-trials",
        type=_positive_int,
        default=None,
        help="start no trial in a study that holds this many finished or running trials",
    )
    p.add_argument(
        "--grace-period",
        type=_positive_int,
        default=60,
        help="seconds without a heartbeat before a running trial is failed (60)",
    )
    p.add_argument(
        "--max-retry",
        type=_nonnegative_int,
        default=2,
        help="re-runs of a trial failed that way (2)",
    )
    return p


def cmd_proxy(argv: list[str]) -> int:
    args = proxy_parser().parse_args(argv)
    from search.storage.proxy import serve
    from search.storage.rdb import StorageError, resolve_url

    try:
        return serve(
            resolve_url(args.storage),
            host=args.host,
            port=args.port,
            grace_period=args.grace_period,
            max_retry=args.max_retry,
            max_trials=args.max_trials,
        )
    except StorageError as e:
        return fail(str(e))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stacks_on_sigusr1()
    verb = argv[0] if argv and (argv[0] in VERBS or argv[0] == "proxy") else None
    try:
        if verb == "proxy":
            return cmd_proxy(argv[1:])
        if verb is not None:
            return run_verb(verb, argv[1:])
        if argv and argv[0] == "run":
            argv = argv[1:]
        return cmd_run(argv)
    except KeyboardInterrupt:
        if verb is not None:
            print(f"optuna-run {verb}: interrupted", file=sys.stderr)
        else:  # a search: before any trial started (loading data, opening storage)
            print("optuna-run: interrupted before any trial started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
