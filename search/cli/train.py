"""`optuna-run train`: retrain a study's best params and save the model."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from data import ConfigError, DataError
from search.api import DEVICES_HELP, load_existing, resolve_device
from search.cli.common import Parser, fail
from search.cli.flags import _nonnegative_int, _out_file, _positive_int, _seed


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


def run_train(args: argparse.Namespace) -> int:
    import torch

    from search.evaluate.export import ExportError
    from search.evaluate.retrain import train_best
    from search.evaluate.verdict import format_verdict
    from search.storage.rdb import StorageError

    out = Path(args.out or f"studies/{args.study_name}-model.pt")
    try:
        device = resolve_device(args.device)
        study = load_existing(args.storage, args.study_name)
        t0 = time.perf_counter()
        ckpt = train_best(
            study,
            out,
            torch.device(device),
            args.data,
            seed=args.seed,
            trial_number=args.trial,
            ensemble=args.ensemble,
            tree=not args.no_tree,
            n_seeds=args.seeds,
        )
    except (StorageError, ExportError, ConfigError, DataError) as e:
        return fail(str(e))
    rep = ckpt["reproduced"]
    n_models = len(ckpt["trial_numbers"])
    which = (
        f"trials {ckpt['trial_numbers']} (ensemble)"
        if n_models > 1
        else f"trial {ckpt['trial_number']}"
    )
    if args.ensemble > n_models:
        print(
            f"--ensemble {args.ensemble}: only {n_models} trial(s) to average (the confirmed "
            "ones when the study was confirmed, else its complete ones); the ensemble holds "
            f"{n_models}",
            file=sys.stderr,
        )
    print(
        f"trained {which} on {device} in {time.perf_counter() - t0:.1f}s "
        f"(best epoch {ckpt['best_epoch']}, seed {rep['seed']})",
        file=sys.stderr,
    )
    vals = ", ".join(f"{v:.6g}" for v in rep["retrained_value"])
    stored = ", ".join(f"{v:.6g}" for v in rep["trial_value"])
    first = f"its first member, trial {ckpt['trial_numbers'][0]}: " if n_models > 1 else ""
    if n_models > 1:
        print(
            "the ensemble's own validation and test figures are in the table below; "
            "the check below is of " + first.rstrip(": "),
            file=sys.stderr,
        )
    if not rep.get("same_seeds", True):
        print(
            f"--seeds {args.seeds}: {args.seeds} seeds averaged where the trial trained "
            f"{rep['study_seeds']}, so not a reproduction: value {vals} (the trial had {stored})",
            file=sys.stderr,
        )
    elif args.seed is not None and not rep["same_seed"]:
        print(
            f"--seed {args.seed}: another seed than the trial's, so not a reproduction: "
            f"value {vals} (the trial had {stored})",
            file=sys.stderr,
        )
    elif rep["match"]:
        print(f"{first}reproduced the trial's value: {vals} (study: {stored})", file=sys.stderr)
    else:
        print(
            f"value {vals} differs from the trial's {stored} (other data, device or threads)",
            file=sys.stderr,
        )
    print(format_verdict(ckpt["verdict"]), file=sys.stderr)
    if not ckpt["same_data_as_study"]:
        print("note: the data differ from the study's (fingerprint changed)", file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)
    return 0
