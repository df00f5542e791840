"""A finished node's last status, left as its container's termination message.

Kubernetes copies the file at a container's `terminationMessagePath` (default
/dev/termination-log) into the pod's status when the container ends. A replica that finished
training writes its final step, accuracy and loss there, so the operator can report the job's
final result after every status endpoint is gone (it reads progress from /status while pods run).
Outside a pod the file does not exist and nothing is written.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

ENV_PATH = "GARFIELD_TERMINATION_LOG"
DEFAULT_PATH = "/dev/termination-log"
LIMIT = 4096  # bytes kubelet keeps of a termination message
FIELDS = ("step", "total_steps", "accuracy", "loss", "steps_per_second", "rejected", "phase", "model")
# Of a final model's manifest (garfield.observability.models), what the job's status names.
MODEL_FIELDS = ("path", "sha256", "format", "step", "accuracy")


def final_message(status: Mapping[str, Any]) -> str:
    """The status fields worth keeping, as compact JSON within the kubelet's limit."""
    kept = {k: status[k] for k in FIELDS if k in status and not _bad_number(status[k])}
    text = json.dumps(kept, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > LIMIT:  # a flood of rejection reasons: keep the figures that matter
        kept.pop("rejected", None)
        text = json.dumps(kept, separators=(",", ":"), sort_keys=True)
    return text


def model_of(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a written model's manifest that a termination message carries (where the model
    is and how to check it), so the operator can name each correct server's model in the job's status."""
    return {k: manifest[k] for k in MODEL_FIELDS if manifest.get(k) is not None and not _bad_number(manifest[k])}


def _bad_number(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def write_final(status: Mapping[str, Any], path: str | None = None) -> bool:
    """Write the final status to the termination log when running in a container that has one.
    Returns whether it was written; never raises (a node's result must not fail on its report)."""
    target = path or os.environ.get(ENV_PATH) or DEFAULT_PATH
    if not os.path.exists(target):
        return False
    try:
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(final_message(status))
        return True
    except OSError:
        return False


def parse(message: str | None) -> dict[str, Any] | None:
    """A termination message back as a status mapping (None when it is not one of ours)."""
    if not message:
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
