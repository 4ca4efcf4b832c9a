"""`optuna-run confirm`: re-train the K best trials with fresh seeds, pick by the mean."""

from __future__ import annotations

import argparse
import sys
import time

from data import ConfigError, DataError
from search.api import DEVICES_HELP, load_existing, resolve_device
from search.cli.common import Parser, fail
from search.cli.flags import _positive_int, _seed
from search.evaluate.confirm import DEFAULT_SEED, confirm


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


def run_confirm(args: argparse.Namespace) -> int:
    import torch

    from search.evaluate.export import ExportError
    from search.evaluate.verdict import format_verdict
    from search.storage.rdb import StorageError

    try:
        device = resolve_device(args.device)
        study = load_existing(args.storage, args.study_name)
        t0 = time.perf_counter()
        rec = confirm(
            study,
            torch.device(device),
            top=args.top,
            seeds=args.seeds,
            seed=DEFAULT_SEED if args.seed is None else args.seed,
            tree=not args.no_tree,
            log=lambda line: print(line, file=sys.stderr),
        )
    except (StorageError, ExportError, ConfigError, DataError) as e:
        return fail(str(e))
    w = rec["trials"][str(rec["winner"])]
    print(
        f"confirmed {len(rec['trials'])} trials x {rec['seeds']} seeds in "
        f"{time.perf_counter() - t0:.1f}s; winner: trial {rec['winner']} "
        f"({rec['objective']} {w['mean']:.5g} +- {w['std']:.2g})",
        file=sys.stderr,
    )
    if rec["flag"]:
        print(f"warning: {rec['flag']}", file=sys.stderr)
    print(format_verdict(rec["verdict"]), file=sys.stderr)
    return 0
