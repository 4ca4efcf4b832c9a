"""`optuna-run`: run a study (default), or `optuna-run export` its best trial, `train`,
`predict`, or `proxy` (the gRPC storage proxy)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data import ConfigError, DataError

DEVICES_HELP = "auto (CUDA when available), cpu, cuda or cuda:N"


def _positive_int(flag: str) -> Callable[[str], int]:
    def conv(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: expected an integer, got {s!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{flag}: expected an integer >= 1, got {v}")
        return v

    return conv


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--timeout: expected seconds, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"--timeout: expected seconds > 0, got {v}")
    return v


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="optuna-run",
        description="Search LSTM hyperparameters on market panel data with Optuna. "
        "Subcommands: `optuna-run export` (best trial to JSON), `optuna-run train` (retrain "
        "the best params, save the model), `optuna-run predict` (predictions from a model), "
        "`optuna-run proxy` (a gRPC storage proxy that workers reach with "
        "--storage grpc://HOST:PORT).",
    )
    p.add_argument(
        "--n-trials",
        type=_positive_int("--n-trials"),
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
    p.add_argument("--pruner", default=None, help="hyperband (default), median or none")
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    p.add_argument("--seed", type=int, default=None, help="seed for a reproducible study")
    p.add_argument(
        "--workers",
        type=_positive_int("--workers"),
        default=1,
        help="worker processes on this machine (default 1)",
    )
    p.add_argument(
        "--max-trials",
        type=_positive_int("--max-trials"),
        default=None,
        help="stop starting trials once the study holds this many finished trials",
    )
    d = p.add_argument_group("data columns (override the config's [data] table)")
    d.add_argument("--date", default=None, help="time-axis column")
    d.add_argument("--id", default=None, help="security column ('' for a single series)")
    d.add_argument("--target", default=None, help="target column (default: forward return)")
    d.add_argument("--features", default=None, help="comma-separated names or globs")
    d.add_argument("--horizon", type=_positive_int("--horizon"), default=None)
    d.add_argument("--task", default=None, help="regression or classification")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="optuna-run export", description="Write a study's best trial as JSON."
    )
    p.add_argument("--study-name", required=True)
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument(
        "--storage",
        default=None,
        help="storage URL (default: $OPTUNA_STORAGE, else sqlite:///studies/optuna.db)",
    )
    p.add_argument("--trials", default=None, help="also write every trial to this .csv/.parquet")
    return p


def fail(msg: str, code: int = 2) -> int:
    print(f"optuna-run: error: {msg}", file=sys.stderr)
    return code


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError([f"--device {name}: CUDA is not available on this machine"])
        if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
            raise ConfigError([f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)"])
        return name
    raise ConfigError([f"--device: expected {DEVICES_HELP}, got {name!r}"])


def cmd_run(argv: list[str]) -> int:
    args = run_parser().parse_args(argv)
    import optuna
    import torch

    from data import Prepared, fingerprint, load_panel
    from data.panel import describe as describe_panel
    from search.config import build_config
    from search.report import Reporter
    from search.runner import (
        Stop,
        make_pruner,
        make_sampler,
        run_parallel,
        run_trials,
        torch_threads,
    )
    from search.storage import StorageError, describe, fail_stale, make_storage, resolve_url
    from search.study import IncompatibleStudy, open_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_url(args.storage)
    try:
        device = resolve_device(args.device)
        flags: dict[str, dict[str, Any]] = {
            "study": {"name": args.study_name},
            "search": {"sampler": args.sampler, "pruner": args.pruner, "seed": args.seed},
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
            },
        }
        cfg = build_config(
            Path(args.config) if args.config else None, cpu=device == "cpu", flags=flags
        )
        if args.id == "":
            from dataclasses import replace

            cfg = replace(cfg, data=replace(cfg.data, id=None))
        t0 = time.perf_counter()
        panel = load_panel(cfg.data)
        data = Prepared(panel, cfg.data, torch.device(device if device != "cuda" else "cuda:0"))
        data.check_time_steps(int(cfg.space.max("time_steps")))
        fp = fingerprint(cfg.data)
    except (ConfigError, DataError) as e:
        return fail(str(e))
    info = describe_panel(panel)
    print(f"optuna-run: study {cfg.study.name!r}, storage {describe(url)}", file=sys.stderr)
    print(
        f"data: {panel.source} -> {info['dates']} dates x {info['securities']} securities x "
        f"{info['features']} features ({info['first_date']} .. {info['last_date']}), "
        f"split train/val/test = {len(data.split.train)}/{len(data.split.val)}/"
        f"{len(data.split.test)} dates, loaded in {time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )
    print(
        f"device: {device}"
        + (" ([cpu] limits apply: a CPU-sized space and budget)" if cfg.cpu_limits else ""),
        file=sys.stderr,
    )
    try:
        st = cfg.storage
        storage = make_storage(
            url,
            heartbeat_interval=st.heartbeat_interval,
            grace_period=st.grace_period,
            max_retry=st.max_retry,
            max_trials=args.max_trials,  # refused here, early, for a grpc:// storage
        )
        study = open_study(storage, cfg, fp, make_sampler(cfg), make_pruner(cfg))
        fail_stale(study)
    except (StorageError, IncompatibleStudy) as e:
        return fail(str(e))
    n_trials = args.n_trials if args.n_trials or args.timeout else 100
    reporter = Reporter(n_trials, cfg.study.direction, quiet=args.quiet)
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


def tempfile_root() -> str:
    import tempfile

    shm = Path("/dev/shm")
    return str(shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir()))


def cmd_export(argv: list[str]) -> int:
    args = export_parser().parse_args(argv)
    import optuna

    from search.export import ExportError, export_best, export_trials
    from search.storage import StorageError, describe, make_storage, resolve_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_url(args.storage)
    try:
        storage = make_storage(url, heartbeat_interval=None)
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if args.study_name not in names:
            return fail(
                f"--study-name: no study {args.study_name!r} in {describe(url)}; "
                f"studies there: {names}"
            )
        study = optuna.load_study(study_name=args.study_name, storage=storage)
        rec = export_best(study, Path(args.out))
        print(
            f"wrote {args.out}: trial {rec['trial_number']} value={rec['value']:.6g}",
            file=sys.stderr,
        )
        if args.trials:
            n = export_trials(study, Path(args.trials))
            print(f"wrote {args.trials}: {n} trials", file=sys.stderr)
    except (StorageError, ExportError) as e:
        return fail(str(e))
    return 0


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="optuna-run train",
        description="Retrain the best trial's params of a study and save the model.",
    )
    p.add_argument("--study-name", required=True)
    p.add_argument("--out", default=None, help="checkpoint file (default studies/<study>-model.pt)")
    p.add_argument("--storage", default=None, help="storage URL (as for a run)")
    p.add_argument("--data", default=None, help="train on this file instead of the study's")
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    p.add_argument("--seed", type=int, default=0)
    return p


def predict_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="optuna-run predict",
        description="Predict with a trained model: one row per (date, id) window end.",
    )
    p.add_argument("--model", required=True, help="checkpoint from `optuna-run train`")
    p.add_argument("--data", default=None, help="Parquet/CSV file (default: the training file)")
    p.add_argument("--out", required=True, help="predictions .csv or .parquet")
    p.add_argument(
        "--dates",
        default="last",
        choices=["last", "test", "all"],
        help="last date only (a submission), the test segment, or every date",
    )
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    return p


def cmd_train(argv: list[str]) -> int:
    args = train_parser().parse_args(argv)
    import optuna
    import torch

    from search.export import ExportError
    from search.retrain import train_best
    from search.storage import StorageError, describe, make_storage, resolve_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_url(args.storage)
    out = Path(args.out or f"studies/{args.study_name}-model.pt")
    try:
        device = resolve_device(args.device)
        storage = make_storage(url, heartbeat_interval=None)
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if args.study_name not in names:
            return fail(f"--study-name: no study {args.study_name!r} in {describe(url)}")
        study = optuna.load_study(study_name=args.study_name, storage=storage)
        t0 = time.perf_counter()
        ckpt = train_best(study, out, torch.device(device), args.data, args.seed)
    except (StorageError, ExportError, ConfigError, DataError) as e:
        return fail(str(e))
    m = ckpt["metrics"]
    print(
        f"trained trial {ckpt['trial_number']}'s params on {device} in "
        f"{time.perf_counter() - t0:.1f}s (best epoch {ckpt['best_epoch']}): "
        + "; ".join(
            f"{seg} " + ", ".join(f"{k}={v:.5g}" for k, v in vals.items() if v is not None)
            for seg, vals in m.items()
        ),
        file=sys.stderr,
    )
    if not ckpt["same_data_as_study"]:
        print("note: the data differ from the study's (fingerprint changed)", file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_predict(argv: list[str]) -> int:
    args = predict_parser().parse_args(argv)
    import torch

    from search.retrain import load_checkpoint, predict_file

    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        return fail(f"--out {out}: expected a .csv or .parquet file name")
    try:
        device = resolve_device(args.device)
        ckpt = load_checkpoint(Path(args.model))
        df = predict_file(ckpt, args.data or ckpt["data"]["path"], args.dates, torch.device(device))
    except (ConfigError, DataError) as e:
        return fail(str(e))
    from search.export import atomic_write

    if out.suffix == ".csv":
        atomic_write(out, df.write_csv())
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        df.write_parquet(tmp)
        tmp.replace(out)
    print(f"wrote {out}: {df.height} predictions", file=sys.stderr)
    return 0


def proxy_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    p.add_argument("--port", type=int, default=13000, help="port (default 13000; 0 = any free)")
    p.add_argument(
        "--max-trials",
        type=_positive_int("--max-trials"),
        default=None,
        help="start no trial in a study that holds this many finished or running trials",
    )
    p.add_argument(
        "--grace-period",
        type=_positive_int("--grace-period"),
        default=60,
        help="seconds without a heartbeat before a running trial is failed (60)",
    )
    p.add_argument(
        "--max-retry", type=int, default=2, help="re-runs of a trial failed that way (2)"
    )
    return p


def cmd_proxy(argv: list[str]) -> int:
    args = proxy_parser().parse_args(argv)
    from search.proxy import serve
    from search.storage import StorageError, resolve_url

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
    commands = {
        "export": cmd_export,
        "train": cmd_train,
        "predict": cmd_predict,
        "proxy": cmd_proxy,
    }
    try:
        if argv and argv[0] in commands:
            return commands[argv[0]](argv[1:])
        if argv and argv[0] == "run":
            argv = argv[1:]
        return cmd_run(argv)
    except KeyboardInterrupt:  # before any trial started (loading data, opening storage)
        print("optuna-run: interrupted before any trial started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
