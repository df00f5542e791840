"""ttlSecondsAfterFinished: delete a finished job (and, by garbage collection, its children)."""

from __future__ import annotations

import datetime as dt

from garfield_operator.policies.clock import seconds_left


def remaining(completion: dt.datetime | None, ttl_seconds: int | None, now: dt.datetime) -> float | None:
    """Seconds until the job is deleted (<= 0: delete now), or None when it is kept."""
    return seconds_left(completion, ttl_seconds, now)
