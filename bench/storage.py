"""Search overhead per trial: what Optuna and the storage cost around a trial that does no
work. A toy objective suggests three params, reports 10 intermediate values (asking
`should_prune` after each, as the real objective does) and sets one user attr; the wall time
per trial, taken over the 20 trials ending at trial 100, 300 and 600, is the overhead.

    python bench/storage.py                                   # every backend, stock and ours
    python bench/storage.py --backends sqlite,postgresql --modes ours --repeat 3
    python bench/storage.py --trials 100,300 --pg postgresql+psycopg://postgres@127.0.0.1/test

Backends: memory (InMemoryStorage), sqlite (a fresh file), postgresql (a fresh database on
--pg, dropped after), proxy (a gRPC storage proxy in a subprocess over a fresh SQLite file,
the trials run through grpc://; needs the [grpc] extra: Optuna's `run_grpc_proxy_server`
with `GrpcStorageProxy` for stock, `optuna-run proxy` with our client for ours). Modes:

- stock: what Optuna's documentation shows: `create_study(storage=URL,
  sampler=TPESampler(), pruner=HyperbandPruner(min_resource=1, max_resource=10))`.
- ours: `search.storage.rdb.make_storage` (heartbeats on, as a run has them) with the sampler and
  pruner set up by `search.study.runner.make_sampler` / `make_pruner` from a study config whose
  epochs range is 1-10.

Each (backend, mode) runs in its own process, `--repeat` times; the figures printed are
medians over the repeats. Absolute times hold only for the machine (and its load) they were
taken on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 20  # trials averaged around each checkpoint
STUDY_TOML = """
[study]
name = "bench"
[data]
path = "{data}"
[search]
sampler = "tpe"
pruner = "hyperband"
seed = {seed}
[space]
epochs = {{ low = 1, high = 10 }}
"""


def toy(trial: Any) -> float:
    import optuna

    x = trial.suggest_float("x", -10.0, 10.0)
    n = trial.suggest_int("n", 1, 8)
    c = trial.suggest_categorical("c", ["a", "b", "c"])
    base = (x - 2.0) ** 2 + 0.1 * n + (0.5 if c == "b" else 0.0)
    value = base
    for step in range(10):
        value = base + 1.0 / (step + 1)
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    trial.set_user_attr("best_epoch", 9)
    return value


def open_study(backend: str, mode: str, url: str, seed: int) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    if mode == "stock":
        storage: Any = None if backend == "memory" else url
        if backend == "proxy":
            host, port = url[len("grpc://") :].rsplit(":", 1)
            storage = optuna.storages.GrpcStorageProxy(host=host, port=int(port))
        return optuna.create_study(
            study_name="bench",
            load_if_exists=True,
            storage=storage,
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=10),
        )
    from search.config.schema import build_config
    from search.storage.rdb import make_storage
    from search.study.pruners import make_pruner, make_sampler

    folder = Path(tempfile.mkdtemp(prefix="bench-cfg-"))
    toml = folder / "bench.toml"
    toml.write_text(STUDY_TOML.format(seed=seed, data=ROOT / "data/sample/sp500_sample.parquet"))
    cfg = build_config(toml, cpu=False)
    storage = optuna.storages.InMemoryStorage() if backend == "memory" else make_storage(url)
    return optuna.create_study(
        study_name="bench",
        load_if_exists=True,
        storage=storage,
        sampler=make_sampler(cfg),
        pruner=make_pruner(cfg),
    )


def run_one(backend: str, mode: str, url: str, n: int, seed: int) -> dict[str, Any]:
    """In this process: run `n` trials, return per-checkpoint ms per trial."""
    study = open_study(backend, mode, url, seed)
    ends: list[float] = [time.perf_counter()]

    def cb(_: Any, __: Any) -> None:
        ends.append(time.perf_counter())

    study.optimize(toy, n_trials=n, callbacks=[cb])
    per = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {"per_trial_s": per, "states": states}


def checkpoint_ms(per: list[float], at: int) -> float:
    window = per[max(0, at - WINDOW) : at]
    return 1000 * statistics.median(window)


def fresh_pg(admin_url: str) -> tuple[str, Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"optuna_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        make_url(admin_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as con:
        con.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as con:
            con.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


STOCK_PROXY = """
import socket, sys
import optuna
from optuna.storages import get_storage, run_grpc_proxy_server
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
storage = get_storage(sys.argv[1])
print(f"serving on grpc://127.0.0.1:{port}", flush=True)
run_grpc_proxy_server(storage, host="127.0.0.1", port=port)
"""


def start_proxy(backing: str, mode: str) -> tuple[str, subprocess.Popen[str]]:
    """`optuna-run proxy` for ours; Optuna's run_grpc_proxy_server(get_storage(URL)) for
    stock. Returns the grpc:// URL once it listens."""
    exe = Path(sys.executable).parent / "optuna-run"
    env = {k: v for k, v in os.environ.items() if k != "OPTUNA_STORAGE"}
    if mode == "stock":
        cmd = [sys.executable, "-c", STOCK_PROXY, backing]
    else:
        cmd = [str(exe), "proxy", "--storage", backing, "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "grpc://" not in line:
        proc.kill()
        raise RuntimeError(f"the proxy did not start: {line!r}")
    url = line.split()[-1]
    if mode == "stock":  # it prints before it listens
        import grpc

        host_port = url[len("grpc://") :]
        with grpc.insecure_channel(host_port) as ch:
            grpc.channel_ready_future(ch).result(timeout=30)
    return url, proc


def measure(backend: str, mode: str, n: int, seed: int, pg: str) -> dict[str, Any]:
    """Set up a fresh storage, run the trials in a child process, clean up."""
    folder = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    cleanup: list[Any] = []
    url = ""
    try:
        if backend in ("sqlite", "proxy"):
            url = f"sqlite:///{folder / 'bench.db'}"
        elif backend == "postgresql":
            url, drop = fresh_pg(pg)
            cleanup.append(drop)
        if backend == "proxy":
            url, proc = start_proxy(url, mode)
            cleanup.append(lambda: (proc.terminate(), proc.wait(timeout=30)))
        out = subprocess.run(
            [sys.executable, __file__, "--child", backend, mode, url, str(n), str(seed)],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{backend}/{mode} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        for f in reversed(cleanup):
            f()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        backend, mode, url, n, seed = sys.argv[2:7]
        print(json.dumps(run_one(backend, mode, url, int(n), int(seed))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="memory,sqlite,postgresql,proxy")
    ap.add_argument("--modes", default="stock,ours")
    ap.add_argument("--trials", default="100,300,600", help="checkpoints; the last is the run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--pg",
        default=os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1/test"),
        help="PostgreSQL server (a fresh database is created there per run and dropped)",
    )
    args = ap.parse_args()
    points = [int(x) for x in args.trials.split(",")]
    n = max(points)
    print(f"search overhead per trial, ms (median of {args.repeat} runs; each figure is the")
    print(f"median wall time of the {WINDOW} trials ending at that trial); toy objective, ")
    print("3 params, 10 reports + should_prune, TPE + Hyperband")
    print(
        f"{'backend':<11} {'mode':<6} "
        + " ".join(f"{'@' + str(p):>8}" for p in points)
        + "  states"
    )
    for backend in args.backends.split(","):
        for mode in args.modes.split(","):
            runs = [measure(backend, mode, n, args.seed + r, args.pg) for r in range(args.repeat)]
            figs = [
                statistics.median(checkpoint_ms(r["per_trial_s"], p) for r in runs) for p in points
            ]
            states = runs[-1]["states"]
            print(
                f"{backend:<11} {mode:<6} "
                + " ".join(f"{f:8.1f}" for f in figs)
                + "  "
                + ", ".join(f"{k} {v}" for k, v in sorted(states.items())),
                flush=True,
            )


if __name__ == "__main__":
    main()
