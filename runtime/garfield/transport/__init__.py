"""gRPC transport: peers (client side), the node service (server side), and a transfer-speed probe."""

from garfield.transport.client import Peer, Unreachable, tensor_request
from garfield.transport.server import ExchangeStats, RequestRejected, TensorSource, start_server, stop_server

__all__ = ["Peer", "Unreachable", "tensor_request", "ExchangeStats", "RequestRejected", "TensorSource", "start_server",
           "stop_server", "measure_transfer"]


def measure_transfer(*args, **kwargs):  # noqa: ANN002, ANN003 - thin lazy re-export
    """See :func:`garfield.transport.throughput.measure_transfer`."""
    from garfield.transport.throughput import measure_transfer as _measure

    return _measure(*args, **kwargs)
