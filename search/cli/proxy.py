"""`optuna-run proxy`: Optuna's gRPC storage proxy in front of one database."""

from __future__ import annotations

import argparse

from search.cli.common import Parser
from search.cli.flags import add_storage, nonnegative_int, port_number, positive_int


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run proxy",
        description="Serve a storage to many workers through Optuna's gRPC storage proxy; "
        "workers run `optuna-run --storage grpc://HOST:PORT`. Plain gRPC: listen on a "
        "private network only.",
    )
    add_storage(p, "database URL")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=port_number, default=13000, help="port (default 13000; 0 = any free)"
    )
    p.add_argument(
        "--max-trials",
        type=positive_int,
        default=None,
        help="start no trial in a study that holds this many finished or running trials",
    )
    p.add_argument(
        "--grace-period",
        type=positive_int,
        default=60,
        help="seconds without a heartbeat before a running trial is failed (60)",
    )
    p.add_argument(
        "--max-retry",
        type=nonnegative_int,
        default=2,
        help="re-runs of a trial failed that way (2)",
    )
    return p


def handle(args: argparse.Namespace) -> int:
    from search.storage.proxy import serve
    from search.storage.rdb import resolve_url
    from search.storage.urls import check_new_file_folder

    url = resolve_url(args.storage)
    check_new_file_folder(url)
    return serve(
        url,
        host=args.host,
        port=args.port,
        grace_period=args.grace_period,
        max_retry=args.max_retry,
        max_trials=args.max_trials,
    )
