"""`optuna-run dashboard`: optuna-dashboard on the study storage."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from search.cli.common import Parser
from search.cli.flags import add_storage, port_number
from search.dashboard import DashboardError, make_dashboard, server_url


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optuna-run dashboard",
        description="Serve optuna-dashboard on the study storage (Ctrl-C stops it).",
    )
    add_storage(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port", type=port_number, default=8080, help="port (default 8080; 0 = a free one)"
    )
    return p


def handle(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C / SIGTERM; the URL is the first line on stdout."""
    import signal

    import optuna

    from search.api import missing_sqlite
    from search.cli.common import fail
    from search.storage.rdb import StorageError, describe, resolve_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_url(args.storage)
    missing = missing_sqlite(url)
    if missing is not None:
        return fail(f"{missing}; to watch a new study as it starts, run it with --dashboard [PORT]")
    try:
        server = make_dashboard(url, args.host, args.port)
    except (DashboardError, StorageError) as e:
        return fail(str(e))

    def on_signal(signum: int, _: Any) -> None:
        # serve_forever's loop ends after the request in hand; shutdown() waits for that,
        # so it is called from another thread (a KeyboardInterrupt raised inside a request
        # would be caught and logged by wsgiref, and the server would go on)
        threading.Thread(target=server.shutdown, daemon=True).start()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    print(server_url(server), flush=True)
    print(
        f"optuna-run: dashboard of {describe(url)} at {server_url(server)} (Ctrl-C stops it)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
        for s, h in old.items():
            signal.signal(s, h)
    return 0
