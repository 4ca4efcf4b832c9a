"""`optuna-run train`: retrain a study's best params and save the model."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from search.cli.common import Parser
from search.cli.flags import (
    add_device,
    add_no_tree,
    add_quiet,
    add_seed,
    add_storage,
    add_study_name,
    checkpoint_file,
    nonnegative_int,
    positive_int,
)


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run train",
        description="Fit the study's winner (the confirmed one, else the best trial) at the final "
        "budget ([final]), judge it against the simple baselines and the tree, and save the "
        "model; --exact reproduces the trial at the search's budget instead.",
    )
    add_study_name(p)
    p.add_argument(
        "--out",
        type=checkpoint_file,
        default=None,
        help="checkpoint file (default studies/<study>-model.pt; --exact: <study>-exact-model.pt)",
    )
    add_storage(p)
    p.add_argument("--data", default=None, help="train on this file instead of the study's")
    add_device(p)
    p.add_argument(
        "--trial",
        type=nonnegative_int,
        default=None,
        help="trial number (default: the confirmed winner, else the best trial)",
    )
    add_seed(p, "train with this seed instead of the trial's own (no longer a reproduction)")
    p.add_argument(
        "--ensemble",
        type=positive_int,
        default=1,
        help="average the K best (confirmed) configurations x their seeds",
    )
    p.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        help="train N seeds of each configuration (its seed, seed + 1, ...) and average "
        "them, as confirm measures; a reproduction only when N is the study's seeds",
    )
    p.add_argument(
        "--exact",
        action="store_true",
        help="reproduce the trial at the search's budget (its epochs, windows, seeds and "
        "folds) instead of the final fit of [final]; its model goes by default to "
        "studies/NAME-exact-model.pt, its verdict to the study's verdict_exact",
    )
    add_no_tree(p)
    add_quiet(p)
    return p


def handle(args: argparse.Namespace) -> int:
    from search.api import model_path, resolve_device, train
    from search.evaluate.verdict import format_verdict

    out = Path(args.out) if args.out else model_path(args.study_name, args.exact)
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    ckpt = train(
        study_name=args.study_name,
        storage=args.storage,
        out=out,
        data=args.data,
        device=device,
        trial=args.trial,
        seed=args.seed,
        ensemble=args.ensemble,
        seeds=args.seeds,
        tree=not args.no_tree,
        quiet=args.quiet,
        exact=args.exact,
    )
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
    _say_reproduction(args, ckpt)
    print(format_verdict(ckpt["verdict"]), file=sys.stderr)
    if not ckpt["same_data_as_study"]:
        print("note: the data differ from the study's (fingerprint changed)", file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _final_line(ckpt: dict[str, Any], vals: str, stored: str) -> str:
    """What the final fit is: not the trial's reproduction, and at which budget."""
    from data.errors import plural

    f = ckpt["final"]
    n = f["max_windows_per_epoch"]
    windows = f"{n:,} training windows" if n else "every training window"
    seeds = len(ckpt["models"][0]["states"])
    # like a trial's value, the mean of the networks' own values, not the averaged model's
    whose = f"the mean of its {seeds} networks' values; " if seeds > 1 else ""
    trial = (
        f"the trial, at the search's budget: {stored}"
        if ckpt["same_data_as_study"]
        else f"on other dates than the trial's {stored}: the data differ from the study's"
    )
    return (
        f"final fit ([final]): {windows} an epoch, up to {plural(f['epochs'], 'epoch')} "
        f"(patience {f['patience']}), {f.get('lr_schedule', 'constant')} learning rate, "
        f"{seeds} seed(s) per configuration: validation {vals} ({whose}{trial}); "
        "`train --exact` reproduces the trial instead"
        + ("; the networks averaged are scored in the table below" if seeds > 1 else "")
    )


def _say_reproduction(args: argparse.Namespace, ckpt: dict[str, Any]) -> None:
    """Whether the retrained value is the trial's (or why it cannot be); a final fit says
    what it is instead."""
    rep = ckpt["reproduced"]
    n_models = len(ckpt["trial_numbers"])
    vals = ", ".join(f"{v:.6g}" for v in rep["retrained_value"])
    stored = ", ".join(f"{v:.6g}" for v in rep["trial_value"])
    first = f"its first member, trial {ckpt['trial_numbers'][0]}: " if n_models > 1 else ""
    if ckpt["fit"] == "final":
        print(_final_line(ckpt, first + vals, stored), file=sys.stderr)
        return
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
