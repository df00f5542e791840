"""HTTP endpoint of a node: ``/metrics`` (Prometheus text) and ``/status`` (JSON).

Served from a daemon thread so that a scrape never waits on the training loop (which may be
inside a long computation); it reads the node's :class:`NodeState`, whose fields are updated
atomically.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from garfield.observability.state import NodeState


class MetricsServer:
    def __init__(self, state: NodeState, host: str, port: int) -> None:
        node_state = state

        class Handler(BaseHTTPRequestHandler):
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

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="garfield-metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
