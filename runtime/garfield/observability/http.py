"""HTTP endpoint of a node: ``/metrics`` (Prometheus text) and ``/status`` (JSON).

Served from a daemon thread so that a scrape never waits on the training loop (which may be
inside a long computation); it reads the node's :class:`NodeState`, whose fields are updated
atomically.

Anyone who reaches the port may connect, so the server is bounded: at most MAX_HANDLERS
connections are handled at once (more wait in a 128-deep accept queue instead of being refused, as
the standard library's queue of 5 did at 200 concurrent clients), a connection that sends nothing
is dropped after HANDLER_TIMEOUT seconds, and a client that leaves mid-answer is not an error
(the standard library printed its BrokenPipe traceback into the node's log).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from garfield.observability.state import NodeState

log = logging.getLogger("garfield.observability")

MAX_HANDLERS = 64
HANDLER_TIMEOUT = 5.0
ACCEPT_QUEUE = 128
# A client gone before its answer was written: its business, not the node's.
_CLIENT_LEFT = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, socket.timeout)


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_handlers` of them; see the module docstring."""

    daemon_threads = True
    request_queue_size = ACCEPT_QUEUE

    def __init__(self, address: tuple[str, int], handler: Any, max_handlers: int = MAX_HANDLERS) -> None:
        self._slots = threading.BoundedSemaphore(max_handlers)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Waiting here pauses accepting (the kernel queues the next clients); a slot frees within
        # HANDLER_TIMEOUT even if every handler is held by a client that sends nothing.
        if not self._slots.acquire(timeout=2 * HANDLER_TIMEOUT):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, _CLIENT_LEFT):
            return
        log.warning("status endpoint: error answering %s", client_address, exc_info=True)


class MetricsServer:
    def __init__(self, state: NodeState, host: str, port: int) -> None:
        node_state = state

        class Handler(BaseHTTPRequestHandler):
            timeout = HANDLER_TIMEOUT  # the socket's: a client that sends nothing is dropped

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype, code = generate_latest(node_state.registry), CONTENT_TYPE_LATEST, 200
                elif path in ("/status", "/"):
                    body, ctype, code = node_state.status_json().encode(), "application/json", 200
                elif path == "/healthz":
                    body, ctype, code = b"ok", "text/plain", 200
                else:
                    body, ctype, code = b"not found", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence access logs
                return

        self._server = BoundedHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="garfield-metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
