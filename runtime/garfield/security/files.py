"""A replica's TLS folder: its own key and certificate and its job's CA, as three PEM files.

The names are a Kubernetes TLS Secret's keys (``tls.key``, ``tls.crt``, ``ca.crt``), so the same
folder layout comes from a mounted Secret on a cluster and from the local launcher's run folder.
Reading checks that each file is the PEM it should be and says which one is wrong, so a replica
with a missing or truncated file stops at start with a clear message instead of failing every
handshake.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from garfield.security.certificates import KeyPair

CA_FILE = "ca.crt"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
# Far more than a P-256 key, a certificate or a CA bundle: a bigger file is not ours.
MAX_FILE_BYTES = 64 * 1024


class TlsConfigError(Exception):
    """The replica's TLS folder cannot be used (missing, unreadable or malformed file)."""


@dataclass(frozen=True)
class TlsMaterial:
    """What one replica holds: the CA that signs its job, its certificate and its private key."""

    ca: bytes
    certificate: bytes
    key: bytes


def write(folder: Path, ca: KeyPair, own: KeyPair) -> None:
    """Write a replica's folder: only the CA's certificate (never its key), the replica's own pair.
    Each file is written whole, then renamed into place; the folder and key are private (0700, 0600)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    for name, data, mode in ((CA_FILE, ca.certificate, 0o644), (CERT_FILE, own.certificate, 0o644),
                             (KEY_FILE, own.key, 0o600)):
        partial = folder / f".{name}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(partial, folder / name)


def _read(folder: Path, name: str, marker: bytes) -> bytes:
    path = folder / name
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise TlsConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise TlsConfigError(f"{path} is over {MAX_FILE_BYTES} bytes: not a PEM {marker.decode()}")
    if b"-----BEGIN " not in data or marker not in data or b"-----END " not in data:
        raise TlsConfigError(f"{path} is not a PEM {marker.decode()} (empty or truncated?)")
    return data


def load(folder: str | Path) -> TlsMaterial:
    """The material in `folder`; TlsConfigError naming the file that is missing or malformed."""
    folder = Path(folder)
    return TlsMaterial(ca=_read(folder, CA_FILE, b"CERTIFICATE"), certificate=_read(folder, CERT_FILE, b"CERTIFICATE"),
                       key=_read(folder, KEY_FILE, b"PRIVATE KEY"))
