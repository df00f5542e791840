"""activeDeadlineSeconds: the job fails with DeadlineExceeded this long after its pods first started."""

from __future__ import annotations

import datetime as dt

from garfield_operator.policies.clock import seconds_left


def remaining(start: dt.datetime | None, deadline_seconds: int | None, now: dt.datetime) -> float | None:
    """Seconds left (<= 0 once exceeded), or None when no deadline applies yet."""
    return seconds_left(start, deadline_seconds, now)
