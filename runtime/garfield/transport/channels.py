"""gRPC channel and server options sized for one job's tensors.

Message limits come from the model size (one chunk plus header room), so a peer cannot make a
node buffer more than one legitimate chunk per message. Reconnection backoff is short because a
job's replicas start at about the same time and the first calls of a run race their peers'
start-up; our own calls carry their own deadlines and retries.
"""

from __future__ import annotations

from garfield.wire.codec import DEFAULT_CHUNK_BYTES, HEADER_SLACK

# Requests are tiny; anything bigger than this is not a request of ours.
MAX_REQUEST_BYTES = 64 * 1024


def message_limit(tensor_bytes: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """The largest message a correct node sends for a tensor of `tensor_bytes`."""
    return min(max(tensor_bytes, 1), chunk_bytes) + HEADER_SLACK


def channel_options(tensor_bytes: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> list[tuple[str, int]]:
    limit = message_limit(tensor_bytes, chunk_bytes)
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", MAX_REQUEST_BYTES),
        ("grpc.enable_retries", 0),  # retries are ours: deadline-aware and quorum-aware
        ("grpc.initial_reconnect_backoff_ms", 50),
        ("grpc.min_reconnect_backoff_ms", 50),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.use_local_subchannel_pool", 1),  # one connection per channel: no sharing between in-process nodes
    ]


def server_options(tensor_bytes: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
        ("grpc.max_send_message_length", message_limit(tensor_bytes, chunk_bytes)),
        ("grpc.so_reuseport", 0),  # two replicas must never share a port silently
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ]
