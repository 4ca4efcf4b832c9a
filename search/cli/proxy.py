"""`optuna-run proxy`: Optuna's gRPC storage proxy in front of one database."""

from __future__ import annotations

import argparse

from search.cli.common import Parser, fail
from search.cli.flags import _nonnegative_int, _port, _positive_int


def proxy_parser() -> argparse.ArgumentParser:
    p = Parser(
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
    p.add_argument("--port", type=_port, default=13000, help="port (default 13000; 0 = any free)")
    p.add_argument(
        "--max-trials",
        type=_positive_int,
        default=None,
        help="start no trial in a study that holds this many finished or running trials",
    )
    p.add_argument(
        "--grace-period",
        type=_positive_int,
        default=60,
        help="seconds without a heartbeat before a running trial is failed (60)",
    )
    p.add_argument(
        "--max-retry",
        type=_nonnegative_int,
        default=2,
        help="re-runs of a trial failed that way (2)",
    )
    return p


def cmd_proxy(argv: list[str]) -> int:
    args = proxy_parser().parse_args(argv)
    from search.storage.proxy import serve
    from search.storage.rdb import StorageError, resolve_url

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
