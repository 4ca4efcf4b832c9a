"""Many workers on one study: direct to PostgreSQL vs through `optuna-run proxy`.

    python bench/workers.py                         # 1, 4 and 16 workers, 20 s each
    python bench/workers.py --workers 1,4,16,32 --seconds 30

Each worker is a process running bench/storage.py's toy trial (3 params, 10 reports with
`should_prune`, TPE + Hyperband as `optuna-run` sets them up) on one shared study in a fresh
PostgreSQL database, with the storage `optuna-run` gives it: the PostgreSQL URL itself
("direct") or grpc:// to one `optuna-run proxy` in front of that database ("proxy"). All
workers start together; trials finished in the measured window (after a warm-up of a few
seconds) give trials/s; the server's connections to that database (pg_stat_activity) are
sampled every 0.2 s and their maximum is printed. Absolute figures hold for this machine: on
two cores, 16 processes share the CPU with the proxy and the database server.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import storage as bench_storage  # noqa: E402  (bench/storage.py)

WARMUP_S = 3.0


def worker(url: str, seed: int, until: float, barrier: Any, q: Any) -> None:
    """One worker: open the study like `optuna-run`, run toy trials until `until`."""
    import optuna

    from search.config.schema import build_config
    from search.storage.rdb import make_storage
    from search.study.pruners import make_pruner, make_sampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    folder = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    toml = folder / "bench.toml"
    toml.write_text(
        bench_storage.STUDY_TOML.format(
            seed=seed, data=bench_storage.ROOT / "data/sample/sp500_sample.parquet"
        )
    )
    cfg = build_config(toml, cpu=False)
    storage = make_storage(url)
    study = optuna.load_study(
        study_name="bench", storage=storage, sampler=make_sampler(cfg), pruner=make_pruner(cfg)
    )
    ends: list[float] = []
    barrier.wait()
    study.optimize(
        bench_storage.toy,
        timeout=max(until - time.time(), 0.1),
        callbacks=[lambda *_: ends.append(time.time())],
    )
    q.put(ends)


def connections(admin: Any, database: str) -> int:
    from sqlalchemy import text

    with admin.connect() as con:
        q = text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d")
        return int(con.execute(q, {"d": database}).scalar_one())


def run(n: int, mode: str, seconds: float, pg: str) -> tuple[float, int]:
    import optuna
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, drop = bench_storage.fresh_pg(pg)
    database = make_url(url).database
    admin = create_engine(make_url(pg).set(database="postgres"))
    proc = None
    try:
        from search.storage.rdb import make_storage

        setup = make_storage(url, heartbeat_interval=None)
        optuna.create_study(study_name="bench", storage=setup)
        setup.close()  # only the workers' (or the proxy's) connections count
        target = url
        if mode == "proxy":
            target, proc = bench_storage.start_proxy(url, "ours")
        ctx = mp.get_context("spawn")
        barrier, q = ctx.Barrier(n), ctx.Queue()
        until = time.time() + 10 + seconds + WARMUP_S  # spawn + import take seconds
        ps = [ctx.Process(target=worker, args=(target, i, until, barrier, q)) for i in range(n)]
        for p in ps:
            p.start()
        peak = {"n": 0}
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak["n"] = max(peak["n"], connections(admin, database))

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        ends = [t for _ in ps for t in q.get(timeout=seconds + 120)]
        done.set()
        for p in ps:
            p.join(timeout=30)
        start = min(ends) + WARMUP_S
        window = [t for t in ends if start <= t <= until]
        span = max(window) - start if window else 1.0
        return len(window) / span, peak["n"]
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        admin.dispose()
        drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", default="1,4,16")
    ap.add_argument("--modes", default="direct,proxy")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument(
        "--pg",
        default=os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1/test"),
    )
    args = ap.parse_args()
    print(f"{'workers':>7} {'mode':<7} {'trials/s':>9} {'max connections':>16}")
    for n in (int(x) for x in args.workers.split(",")):
        for mode in args.modes.split(","):
            rate, conns = run(n, mode, args.seconds, args.pg)
            print(f"{n:>7} {mode:<7} {rate:>9.1f} {conns:>16}", flush=True)


if __name__ == "__main__":
    main()
