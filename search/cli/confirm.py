"""`optuna-run confirm`: re-train the K best trials with fresh seeds, pick by the mean."""

from __future__ import annotations

import argparse
import sys
import time

from search.cli.common import Parser
from search.cli.flags import (
    add_device,
    add_no_tree,
    add_quiet,
    add_seed,
    add_storage,
    add_study_name,
    checkpoint_file,
    positive_int,
)


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run confirm",
        description="Re-train the K best trials with fresh seeds; name the winner by the mean.",
    )
    add_study_name(p)
    add_storage(p)
    p.add_argument("--top", type=positive_int, default=5, help="trials (default 5)")
    p.add_argument(
        "--seeds", type=positive_int, default=None, help="seeds (default 5; 1 with --final)"
    )
    p.add_argument(
        "--final",
        action="store_true",
        help="train each at the final fit's budget ([final]: every window, its epochs and "
        "learning-rate schedule) instead of the search's; the winner's networks are then "
        "the final model, saved at --out",
    )
    p.add_argument(
        "--out",
        type=checkpoint_file,
        default=None,
        help="with --final: the model's checkpoint file (default studies/<study>-model.pt)",
    )
    add_seed(p, "first fresh seed")
    add_device(p)
    add_no_tree(p)
    add_quiet(p)
    return p


def handle(args: argparse.Namespace) -> int:
    from search.api import confirm
    from search.evaluate.verdict import format_verdict
    from search.study.progress import plural

    if args.out is not None and not args.final:
        parser().error("--out: a model is saved only at the final fit's budget; add --final")
    t0 = time.perf_counter()
    rec = confirm(
        study_name=args.study_name,
        storage=args.storage,
        top=args.top,
        seeds=args.seeds,
        seed=args.seed,
        device=args.device,
        tree=not args.no_tree,
        quiet=args.quiet,
        final=args.final,
        out=args.out,
    )
    w = rec["trials"][str(rec["winner"])]
    print(
        f"confirmed {plural(len(rec['trials']), 'trial')} x {rec['seeds']} seed(s)"
        + (" at the final fit's budget" if rec["budget"] == "final" else "")
        + " in "
        f"{time.perf_counter() - t0:.1f}s; winner: trial {rec['winner']} "
        f"({rec['objective']} {w['mean']:.5g} +- {w['std']:.2g})",
        file=sys.stderr,
    )
    if rec["flag"]:
        print(f"warning: {rec['flag']}", file=sys.stderr)
    print(format_verdict(rec["verdict"]), file=sys.stderr)
    if rec.get("luck"):
        from search.study.luck import format_luck

        print(format_luck(rec["luck"]), file=sys.stderr)
    if rec.get("model"):
        print(
            f"wrote {rec['model']} (trial {rec['winner']}'s networks from this confirm: "
            "optuna-run predict reads it; train refits with [final] seeds)",
            file=sys.stderr,
        )
    return 0
