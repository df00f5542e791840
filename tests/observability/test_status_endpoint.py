"""The node's HTTP endpoint under the load anyone who reaches its port can make: many clients at
once, clients that connect and send nothing, clients that leave mid-answer."""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import socket
import urllib.request

import pytest

from garfield.observability import http
from garfield.observability.http import MetricsServer
from garfield.observability.state import NodeState


@pytest.fixture
def endpoint():
    server = MetricsServer(NodeState("j", "server", 0, 10), "127.0.0.1", 0).start()
    yield server
    server.stop()


def get(port: int, path: str = "/status") -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as response:
        return response.status, response.read()


def test_two_hundred_clients_at_once_are_all_answered(endpoint: MetricsServer) -> None:
    with cf.ThreadPoolExecutor(200) as pool:
        replies = list(pool.map(lambda _: get(endpoint.port), range(200)))
    assert all(code == 200 and json.loads(body)["total_steps"] == 10 for code, body in replies)


def test_silent_connections_cannot_starve_a_scrape(endpoint: MetricsServer) -> None:
    """More idle connections than handlers: they are dropped after the handler timeout, and a
    scrape made meanwhile is answered (it waits in the accept queue, it is not refused)."""
    idle = [socket.create_connection(("127.0.0.1", endpoint.port)) for _ in range(http.MAX_HANDLERS + 16)]
    try:
        code, body = get(endpoint.port, "/metrics")
        assert code == 200 and b"garfield_step" in body
        # every idle connection was closed by the server (recv returns b"" at its end)
        for sock in idle:
            sock.settimeout(60)
            assert sock.recv(1) == b""
    finally:
        for sock in idle:
            sock.close()


def test_a_client_that_left_is_no_error_but_a_real_error_is_logged(endpoint: MetricsServer, capsys, caplog) -> None:
    server = endpoint._server
    for gone in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset"), TimeoutError()):
        try:
            raise gone
        except OSError:
            server.handle_error(None, ("127.0.0.1", 1))
    assert capsys.readouterr().err == "" and not caplog.records
    with caplog.at_level(logging.WARNING, logger="garfield.observability"):
        try:
            raise ValueError("a bug")
        except ValueError:
            server.handle_error(None, ("127.0.0.1", 2))
    assert capsys.readouterr().err == ""
    assert [r.exc_info[0] for r in caplog.records] == [ValueError]
