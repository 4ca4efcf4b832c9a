"""`optuna-run proxy`: Optuna's gRPC storage proxy in front of one RDB storage, so that many
workers share a study without each holding database connections:

    optuna-run proxy --storage postgresql+psycopg://USER:PW@DBHOST/optuna --host 0.0.0.0
    optuna-run --storage grpc://PROXYHOST:13000 --n-trials 100        # on every worker

The server is Optuna's (`optuna.storages.run_grpc_proxy_server`'s servicer and protocol;
stock `GrpcStorageProxy` clients work too), with what the service adds around it:

- The backing storage is `make_storage`'s (SQLite pragmas and locks, PostgreSQL set-up and
  reconnection), wrapped in Optuna's trial cache as `run_grpc_proxy_server` advises.
- Heartbeats: a worker's heartbeat arrives as a reserved trial system attr and is stored as
  a heartbeat row. The proxy fails stale trials of every study itself, every few seconds, and
  queues a retry of their params (`--max-retry`), since workers behind it cannot. A trial's
  first heartbeat is its worker's (a stock client sends none, and its trials are never
  failed); so a worker that dies between creating a trial and its first beat leaves that
  trial RUNNING, as Optuna does (without the proxy the heartbeat is written with the trial).
- `--max-trials N`: starting a trial in a study that holds N COMPLETE, PRUNED or RUNNING
  trials is refused (RESOURCE_EXHAUSTED), and the workers stop once N have finished. The
  count and the start are one locked step, as without the proxy.
- The connection is plain (insecure) gRPC: listen on 127.0.0.1 (the default) or a private
  network only. The proxy's log shows the storage with its password masked.
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import optuna

from search.storage import _optuna
from search.storage.rdb import StorageError, describe, make_storage

DEFAULT_PORT = 13000


def _fail_stale_forever(storage: optuna.storages.BaseStorage, every: float, done: Any) -> None:
    """Fail the stale trials of every study (queueing their retries) until `done` is set."""
    while not done.wait(every):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                for s in storage.get_all_studies():
                    study = optuna.load_study(study_name=s.study_name, storage=storage)
                    optuna.storages.fail_stale_trials(study)
        except Exception as e:  # keep serving; say why this sweep failed
            print(
                f"optuna-run proxy: stale-trial check failed: {type(e).__name__}", file=sys.stderr
            )


def serve(
    url: str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    heartbeat_interval: int = 20,
    grace_period: int = 60,
    max_retry: int = 2,
    max_trials: int | None = None,
    threads: int = 16,
) -> int:
    """Serve `url` on host:port until SIGINT/SIGTERM. Prints one line when listening:
    `optuna-run proxy: serving STORAGE on grpc://HOST:PORT` (PORT resolved when 0)."""
    try:
        import grpc
    except ImportError:
        raise StorageError(
            "the storage proxy needs grpcio and protobuf, which are not installed: "
            "pip install 'lstm-panel-search[grpc]'"
        ) from None
    fast = _optuna.fast("grpc")
    if fast is None:
        raise StorageError(
            f"the storage proxy is built on Optuna's gRPC servicer, used only with the Optuna "
            f"releases it was tested with ({_optuna.stock_reason()}); run the workers on the "
            "database URL instead"
        )
    if url.startswith("grpc://"):
        raise StorageError("--storage: the proxy serves a database URL, not another proxy")
    backend = make_storage(
        url,
        # also how often stale trials are looked for: well within the grace period
        heartbeat_interval=max(1, min(heartbeat_interval, grace_period // 3)),
        grace_period=grace_period,
        max_retry=max_retry,
        max_trials=max_trials,
        beat_on_create=False,  # a stock client sends no heartbeat: its trials never go stale
    )
    storage = optuna.storages.get_storage(backend)  # Optuna's in-process trial cache
    server = grpc.server(ThreadPoolExecutor(max_workers=threads))
    fast.add_proxy_service(storage, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise StorageError(f"--host/--port: cannot listen on {host}:{port}")
    done = threading.Event()
    sweeper = threading.Thread(
        target=_fail_stale_forever,
        args=(storage, max(1.0, min(grace_period / 2, 10.0)), done),
        daemon=True,
    )

    def on_signal(signum: int, _: Any) -> None:
        done.set()

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, on_signal)
    server.start()
    sweeper.start()
    shown = f"[{host}]" if ":" in host else host
    cap = f", at most {max_trials} trials per study" if max_trials else ""
    print(f"optuna-run proxy: serving {describe(url)}{cap} on grpc://{shown}:{bound}", flush=True)
    done.wait()
    server.stop(grace=5).wait()
    backend.close()
    print("optuna-run proxy: stopped", file=sys.stderr)
    return 0
