"""The one piece of arithmetic the timed policies share: how long a budget counted from an instant
has left. `deadline` (activeDeadlineSeconds from startTime) and `ttl` (ttlSecondsAfterFinished from
completionTime) each say what their instant and budget are."""

from __future__ import annotations

import datetime as dt


def seconds_left(since: dt.datetime | None, budget_seconds: int | None, now: dt.datetime) -> float | None:
    """Seconds left of `budget_seconds` counted from `since` (<= 0 once spent), or None when either
    is unset (no budget applies yet)."""
    if since is None or budget_seconds is None:
        return None
    return budget_seconds - (now - since).total_seconds()
