"""ttlSecondsAfterFinished: delete a finished job (and, by garbage collection, its children)."""

from __future__ import annotations

import datetime as dt


def remaining(completion: dt.datetime | None, ttl_seconds: int | None, now: dt.datetime) -> float | None:
    """Seconds until the job is deleted (<= 0: delete now), or None when it is kept."""
    if completion is None or ttl_seconds is None:
        return None
    return ttl_seconds - (now - completion).total_seconds()
