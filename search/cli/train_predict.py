"""`optuna-run train` (retrain a study's best params, save the model) and `optuna-run
predict` (predictions from a saved model)."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from data import ConfigError, DataError
from search.cli.common import fail, load_existing, resolve_device


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


def run_predict(args: argparse.Namespace) -> int:
    import torch

    from data.load import DataWarning
    from search.evaluate.predict import load_checkpoint, predict_file

    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        return fail(f"--out {out}: expected a .csv or .parquet file name")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            device = resolve_device(args.device)
            ckpt = load_checkpoint(Path(args.model))
            ckpt["data"] = with_columns(ckpt["data"], args.date, args.id)
            path = args.data or ckpt["data"]["path"]
            df = predict_file(ckpt, path, args.dates, torch.device(device))
        except (ConfigError, DataError) as e:
            error: str | None = str(e)
        else:
            error = None
    # each once, one line each: the file is read twice (the model's target and the raw one)
    for w in caught or []:
        if not issubclass(w.category, DataWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    ours = (str(w.message) for w in caught or [] if issubclass(w.category, DataWarning))
    for msg in dict.fromkeys(ours):
        print(f"optuna-run: warning: {msg}", file=sys.stderr)
    if error is not None:
        return fail(error)
    from search.evaluate.export import atomic_write

    if out.suffix == ".csv":
        atomic_write(out, df.write_csv())
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        df.write_parquet(tmp)
        tmp.replace(out)
    print(f"wrote {out}: {df.height} predictions", file=sys.stderr)
    return 0


def with_columns(settings: dict[str, Any], date: str | None, ident: str | None) -> dict[str, Any]:
    """The checkpoint's data settings with the --date / --id column names of another file."""
    s = dict(settings)
    if date:
        s["date"] = date
    if ident is not None:
        s["id"] = ident or None
    return s
