"""`optuna-run [run]`: run a study (the default verb)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from data import ConfigError, DataError
from search.api import DEVICES_HELP, resolve_device
from search.cli.common import Parser, fail
from search.cli.flags import _port, _positive_float, _positive_int, _seed, _workers
from search.study.session import SEED_MAX, auto_workers, check_seed, tempfile_root


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
        data.check_time_steps(int(cfg.space.max("time_steps")))
        data.check_objective(cfg.study.metrics)
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
