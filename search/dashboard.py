"""`optuna-run dashboard`: optuna-dashboard on the study storage, bound to 127.0.0.1 unless
asked otherwise; also started beside a running search (`optuna-run --dashboard`).

The server is optuna-dashboard's WSGI app under the standard library's wsgiref server (what
`optuna_dashboard.run_server` uses), made here so that the bound port is known (port 0 picks
a free one) and a busy port is a one-line error.
"""

from __future__ import annotations

import errno
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class DashboardError(RuntimeError):
    """The dashboard cannot start: the message names the flag at fault."""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def make_dashboard(
    url: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, flag: str = "--port"
) -> WSGIServer:
    """A bound (not yet serving) server of optuna-dashboard on the storage at `url`. The
    port is bound before the storage is opened: a busy port touches no database. `flag`
    names the option that gave the port in the error."""
    from optuna_dashboard import wsgi

    from search.storage.rdb import make_storage

    try:
        server = make_server(host, port, _unset_app, handler_class=_QuietHandler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise DashboardError(
                f"{flag} {port}: {host}:{port} is already in use; choose another {flag} "
                "(0 picks a free one)"
            ) from None
        reason = e.strerror if isinstance(e.strerror, str) else str(e)
        raise DashboardError(f"--host {host} {flag} {port}: cannot listen: {reason}") from None
    try:
        server.set_app(wsgi(make_storage(url, heartbeat_interval=None)))
    except BaseException:
        server.server_close()
        raise
    return server


def _unset_app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]


def server_url(server: WSGIServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}/dashboard/"


class Background:
    """The dashboard served from a daemon thread while a search runs in this process."""

    def __init__(self, server: WSGIServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return server_url(self.server)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
