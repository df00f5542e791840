"""Reading a local replica's `/status` (docs/design.md, observability contract) and its final log line.

The launcher never trusts a Byzantine replica's report: progress, accuracy and the final summary come
only from the correct servers (the correct peers in a decentralized job). What the replies add up to
is `garfield.observability.status`, the operator's rule too.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def fetch_status(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> dict[str, Any] | None:
    """The node's `/status` JSON, or None when it is not (yet, or any more) answering."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/status", timeout=timeout) as response:
            body = response.read(1 << 20)
        value = json.loads(body)
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def final_from_log(path: Path, tail_bytes: int = 1 << 16) -> dict[str, Any] | None:
    """The fields of the node's last structured ``"msg": "done"`` log line, if it wrote one.

    A correct server reports "done" on `/status` only while it lingers for its peers' last requests;
    the log line it writes at that moment is the record that survives its exit, so the summary's final
    accuracy never depends on the launcher's refresh tick catching that short window.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - tail_bytes))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if '"done"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("msg") == "done":
            return {k: entry[k] for k in ("step", "accuracy", "loss", "rejected", "quorums") if k in entry}
    return None
