"""`optuna-run [run]`: run a study (the default verb)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from search.cli.common import Parser, warn
from search.cli.flags import (
    add_device,
    add_seed,
    add_storage,
    add_study_name,
    column_list,
    port_number,
    positive_int,
    seconds,
    worker_count,
)
from search.study.session import SEED_MAX


def parser() -> argparse.ArgumentParser:
    from search.cli.app import verbs_help

    p = Parser(
        prog="optuna-run",
        description="Search LSTM hyperparameters on market panel data with Optuna. " + verbs_help(),
    )
    p.add_argument(
        "--n-trials",
        type=positive_int,
        default=None,
        help="trials this invocation runs in all (default: until --timeout, or 100)",
    )
    p.add_argument(
        "--timeout",
        type=seconds,
        default=None,
        help="stop starting trials after this many seconds",
    )
    add_study_name(p, required=False, default=None, help="study name (default: [study] name)")
    add_storage(p)
    p.add_argument("--data", default=None, help="Parquet or CSV file (default: the config's)")
    p.add_argument("--config", default=None, help="study TOML (default: studies/default.toml)")
    p.add_argument("--sampler", default=None, help="tpe (default) or random")
    p.add_argument(
        "--pruner", default=None, help="hyperband (default), successive_halving, median or none"
    )
    add_device(p)
    add_seed(p, f"seed for a reproducible study (0 to {SEED_MAX})")
    _search_flags(p)
    _data_flags(p)
    _run_flags(p)
    return p


def _search_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--objective",
        default=None,
        help="trial value: val_loss, rank_ic, ic, icir, rank_icir, sharpe, mse_skill, "
        "r2_weighted, utility, accuracy, log_loss, auc, ...; comma-separated for several",
    )
    p.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        help="models per trial with consecutive seeds; the value is their mean",
    )
    p.add_argument(
        "--folds",
        type=positive_int,
        default=None,
        help="walk-forward folds trained in lockstep (default: [data] folds, 1)",
    )
    p.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        help="worker processes on this machine (default 1); auto: the count that trains "
        "fastest here, measured once per machine and space (several per GPU)",
    )
    p.add_argument(
        "--max-trials",
        type=positive_int,
        default=None,
        help="stop starting trials once the study holds this many finished trials",
    )


def _data_flags(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data columns (override the config's [data] table)")
    d.add_argument("--date", default=None, help="time-axis column")
    d.add_argument("--id", default=None, help="security column ('' for a single series)")
    d.add_argument("--target", default=None, help="target column (default: forward return)")
    d.add_argument(
        "--features", type=column_list, default=None, help="comma-separated names or globs"
    )
    d.add_argument("--horizon", type=positive_int, default=None)
    d.add_argument("--task", default=None, help="regression or classification")
    d.add_argument(
        "--close", default=None, help="close-price column (the forward return, OHLCV features)"
    )
    d.add_argument(
        "--target-cs",
        default=None,
        help="the target per date: zscore, rank, demean or none (one series: none)",
    )
    d.add_argument(
        "--target-scale",
        type=float,
        default=None,
        help="multiply the regression target by this (a raw return: 100 or more)",
    )
    d.add_argument(
        "--normalize",
        default=None,
        help="feature scaling: cs_rank, cs_rank+level, cs_zscore, robust or none "
        "(one series: robust or none)",
    )


def _run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dashboard",
        type=port_number,
        nargs="?",
        const=8080,
        default=None,
        metavar="PORT",
        help="serve optuna-dashboard on 127.0.0.1:PORT (default 8080) while the search runs",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or status lines")


def flags(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The flags that override the study TOML, by section (None: not given; `--id ''`:
    the file is one series)."""
    return {
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
            "id": args.id,
            "target": args.target,
            "features": args.features,
            "horizon": args.horizon,
            "task": args.task,
            "close": args.close,
            "target_cs": args.target_cs,
            "target_scale": args.target_scale,
            "normalize": args.normalize,
            "folds": args.folds,
        },
    }


def handle(args: argparse.Namespace) -> int:
    from search.api import resolve_device
    from search.config import load_config
    from search.config.load import default_config_path
    from search.storage.rdb import check_url, resolve_url
    from search.storage.urls import check_new_file_folder
    from search.study import session

    url = resolve_url(args.storage)
    check_url(url)  # a storage that cannot be used fails before the data are loaded
    check_new_file_folder(url)
    device = resolve_device(args.device)
    cfg = load_config(path=args.config, cpu=device == "cpu", flags=flags(args))
    toml = Path(args.config) if args.config else default_config_path()
    plan = session.prepare(
        cfg,
        device=device,
        workers=args.workers,
        seed_where="--seed" if args.seed is not None else f"{toml}: [search] seed",
        warn=warn,
    )
    out = session.run(
        plan,
        url,
        n_trials=args.n_trials,
        timeout=args.timeout,
        max_trials=args.max_trials,
        dashboard=args.dashboard,
        quiet=args.quiet,
    )
    if out.interrupted:
        print(session.INTERRUPTED_LINE, file=sys.stderr)
        return 130
    return 1 if out.errors else 0
