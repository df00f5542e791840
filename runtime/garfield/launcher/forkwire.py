"""The launcher <-> fork server protocol: JSON lines on a socketpair (see :mod:`garfield.launcher.forkserver`).

Why a module of its own: both ends (the launcher's :class:`~garfield.launcher.forkserver.ForkServer` and the
server's loop in :mod:`garfield.launcher.forkserve`) must frame messages identically, and neither end needs
the other's code to do so.

Messages on a socketpair. Launcher -> server: ``{"op": "preload", ...}`` once, then
``{"op": "spawn", "id", "argv", "env", "cwd", "log"}``; closing the socket stops the server (which
SIGKILLs whatever children are left). Server -> launcher: ``{"ready", ...}``, ``{"spawned": id,
"pid"}`` (or ``"error"``), ``{"exited": pid, "returncode"}``.
"""

from __future__ import annotations

import json
from typing import Any


def encode(message: dict[str, Any]) -> bytes:
    """One message as one line."""
    return (json.dumps(message) + "\n").encode()


def decode(line: bytes) -> Any:
    """One received line's message (ValueError when it is not JSON)."""
    return json.loads(line)


def split_lines(buffer: bytearray) -> list[Any]:
    """The complete lines received so far, decoded and removed from `buffer` (a partial last line stays)."""
    lines = []
    while (end := buffer.find(b"\n")) >= 0:
        lines.append(decode(bytes(buffer[:end])))
        del buffer[:end + 1]
    return lines
