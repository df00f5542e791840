"""Structured logs: one JSON object per line on stderr, tagged with the node's identity.

``log.info("step", extra={"fields": {...}})`` adds fields; the local launcher keeps each
replica's lines in its own file and ``kubectl logs`` shows the same lines on a cluster.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

# The identity of the node whose code is running, when several share a process (`garfield
# simulate` runs each node's task in a context with it set); merged into that node's lines.
NODE_IDENTITY: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("garfield_node_identity",
                                                                                        default=None)


class JsonFormatter(logging.Formatter):
    def __init__(self, identity: dict[str, Any]) -> None:
        super().__init__()
        self.identity = identity

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"ts": round(time.time(), 3), "level": record.levelname.lower(), **self.identity,
                                 **(NODE_IDENTITY.get() or {}), "msg": record.getMessage()}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(identity: dict[str, Any], level: int = logging.INFO) -> logging.Logger:
    """Route the `garfield` loggers to stderr as JSON lines carrying `identity`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(identity))
    root = logging.getLogger("garfield")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    return root
