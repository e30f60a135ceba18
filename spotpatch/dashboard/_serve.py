"""The dashboard served live: a local HTTP server on 127.0.0.1 that rebuilds the page from the
storage on each request (at most once every ``min_interval`` seconds), so a running study can be
watched by reloading.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer

from spotpatch._defaults import DASHBOARD_HOST, DEFAULT_PORT
from spotpatch._errors import UserError
from spotpatch.dashboard._data import dashboard_data
from spotpatch.dashboard._html import render_dashboard
from spotpatch.search import parse_rule

__all__ = ["HOST", "DEFAULT_PORT", "DashboardServer", "make_server", "serve_dashboard"]

log = logging.getLogger("spotpatch")
#: Loopback only: the page shows study data and nothing on it asks for a login.
HOST = DASHBOARD_HOST


class _PageCache:
    """The last page built, rebuilt when older than ``min_interval`` seconds."""

    def __init__(self, storage, rule: str | None, min_interval: float) -> None:
        self.storage, self.rule, self.min_interval = storage, rule, min_interval
        self._lock = threading.Lock()
        self._page: bytes | None = None
        self._built = 0.0

    def page(self) -> bytes:
        with self._lock:
            now = time.monotonic()
            if self._page is None or now - self._built >= self.min_interval:
                text = render_dashboard(
                    dashboard_data(self.storage, self.rule),
                    note="served live: reload the page for new trials",
                )
                self._page, self._built = text.encode("utf-8"), now
            return self._page


class DashboardServer(HTTPServer):
    """An :class:`HTTPServer` that carries the page cache its handler serves from."""

    def __init__(self, address: tuple[str, int], cache: _PageCache) -> None:
        self.cache = cache
        super().__init__(address, _DashboardHandler)


class _DashboardHandler(BaseHTTPRequestHandler):
    server: DashboardServer

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        if self.path.split("?", 1)[0] not in ("/", "/index.html"):
            self._send(404, b"not found\n", "text/plain; charset=utf-8")
            return
        try:
            body = self.server.cache.page()
        except UserError as e:
            self._send(503, f"{e}\n".encode(), "text/plain; charset=utf-8")
            return
        self._send(200, body, "text/html; charset=utf-8")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base's name)
        log.debug("dashboard: " + format, *args)


def make_server(
    storage, *, port: int = DEFAULT_PORT, rule: str | None = None, min_interval: float = 2.0
) -> DashboardServer:
    """An HTTP server on 127.0.0.1:``port`` (0: any free port) serving the dashboard.

    Raises:
        UserError: a bad rule, or a port that cannot be bound.
    """
    from spotpatch.studies import open_storage

    rule = None if rule is None else str(parse_rule(rule))
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {port}")
    import optuna

    if isinstance(storage, str):
        storage = open_storage(storage, existing=True)
    # One trial cache for the server's life: a reload reads only the trials that changed.
    storage = optuna.storages.get_storage(storage)
    try:
        return DashboardServer((HOST, port), _PageCache(storage, rule, min_interval))
    except OSError as e:
        raise UserError(f"cannot listen on {HOST}:{port}: {e.strerror or e}") from None


def serve_dashboard(
    storage,
    *,
    port: int = DEFAULT_PORT,
    rule: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard until Ctrl-C, then close the socket and return.

    The page is built once before serving, so a storage without studies fails at once.

    Example:
        >>> serve_dashboard("sqlite:///spotpatch.db", port=8050)  # doctest: +SKIP
    """
    server = make_server(storage, port=port, rule=rule)
    try:
        server.cache.page()
        if on_ready is not None:
            on_ready(f"http://{HOST}:{server.server_address[1]}/")
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
