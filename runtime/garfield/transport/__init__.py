"""gRPC transport: peers (client side), the node service (server side), and a transfer-speed probe."""

from __future__ import annotations

from typing import TYPE_CHECKING

from garfield.transport.client import Peer, Unreachable, tensor_request
from garfield.transport.server import ExchangeStats, RequestRejected, TensorSource, start_server, stop_server

__all__ = ["Peer", "Unreachable", "tensor_request", "ExchangeStats", "RequestRejected", "TensorSource", "start_server",
           "stop_server", "measure_transfer"]

if TYPE_CHECKING:
    from garfield.transport.throughput import TransferResult


def measure_transfer(nbytes: int, repeats: int = 5, tls: bool = False) -> TransferResult:
    """See :func:`garfield.transport.throughput.measure_transfer` (imported on first use)."""
    from garfield.transport.throughput import measure_transfer as _measure

    return _measure(nbytes, repeats, tls=tls)
