"""Free loopback ports for a job's replicas.

All sockets are held open until every port is chosen, so one call never hands out the same port
twice; the kernel picks them from the ephemeral range, which other programs rarely bind by number.
The window between closing them here and a node binding them is milliseconds; a node that loses
that race fails to bind, which the launcher reports as a start-up failure with the node's log.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports that were free on `host` a moment ago."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    with ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def loopback_table(roles: dict[str, int], host: str = "127.0.0.1") -> dict[tuple[str, int], dict[str, int]]:
    """`{(role, index): {"grpc": p, "metrics": m}}` for every replica, ready for `Loopback(...)`."""
    total = sum(roles.values())
    ports = iter(free_ports(2 * total, host))
    return {(role, index): {"grpc": next(ports), "metrics": next(ports)}
            for role, count in roles.items() for index in range(count)}
