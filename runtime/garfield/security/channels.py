"""gRPC credentials from a replica's TLS material, and the two checks gRPC leaves to us.

Both sides present a certificate signed by the job's CA (``require_client_auth``): a plaintext
client, or one with another CA's certificate, fails the handshake and never reaches a handler.
A client checks that the peer is the replica it dialed by naming the peer's stable name as the
TLS target (``grpc.ssl_target_name_override``): gRPC then refuses a certificate that does not
list it, e.g. a Byzantine replica's own certificate presented on a crashed peer's port. A server
learns the caller from the URI SAN of the certificate it verified (``peer_uri`` in gRPC's auth
context); whether that caller may make a request is the node's decision (``authenticate``).
"""

from __future__ import annotations

from typing import Any

import grpc

from garfield.security.files import TlsMaterial

# How gRPC words a failed handshake or peer check in a call's details (grpc 1.85): a peer that
# answers with such an error holds no valid identity for the name we dialed.
HANDSHAKE_FAILURES = (
    "Hostname Verification Check failed",  # a certificate of the job, for another replica
    "CERTIFICATE_VERIFY_FAILED",  # a certificate of no CA of ours (or none)
    "Tls handshake failed",
    "Ssl handshake failed",
)


def server_credentials(material: TlsMaterial) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(material.key, material.certificate)], root_certificates=material.ca,
                                       require_client_auth=True)


def channel_credentials(material: TlsMaterial) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=material.ca, private_key=material.key,
                                        certificate_chain=material.certificate)


def target_options(peer_name: str) -> list[tuple[str, Any]]:
    """Channel options making the handshake check that the peer's certificate names `peer_name`."""
    return [("grpc.ssl_target_name_override", peer_name), ("grpc.default_authority", peer_name)]


def caller_uri(context: Any) -> str | None:
    """The URI SAN of the client certificate gRPC verified for this call; None on a plaintext call."""
    try:
        values = context.auth_context().get("peer_uri") or []
    except Exception:  # noqa: BLE001 - a context without auth data is a plaintext call
        return None
    for value in values:
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return None


def is_handshake_failure(details: str | None) -> bool:
    """Whether a failed call's details say the peer failed authentication (not merely absent)."""
    return bool(details) and any(token in details for token in HANDSHAKE_FAILURES)  # type: ignore[operator]
