"""activeDeadlineSeconds: the job fails with DeadlineExceeded this long after its pods first started."""

from __future__ import annotations

import datetime as dt


def remaining(start: dt.datetime | None, deadline_seconds: int | None, now: dt.datetime) -> float | None:
    """Seconds left (<= 0 once exceeded), or None when no deadline applies yet."""
    if start is None or deadline_seconds is None:
        return None
    return deadline_seconds - (now - start).total_seconds()
