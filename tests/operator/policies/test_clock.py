"""policies/clock.py: the budget arithmetic that deadline.py and ttl.py share (their own tables
check what each one counts from)."""

from __future__ import annotations

import datetime as dt

import pytest

from garfield_operator.policies import deadline, ttl
from garfield_operator.policies.clock import seconds_left

from support.decisions import T0

# (id, since, budget, seconds since T0, seconds left or None)
CASES: list[tuple[str, dt.datetime | None, int | None, float, float | None]] = [
    ("no-instant-yet", None, 100, 50, None),
    ("no-budget", T0, None, 50, None),
    ("untouched", T0, 100, 0, 100.0),
    ("sub-second", T0, 1, 0.25, 0.75),
    ("spent-exactly", T0, 100, 100, 0.0),
    ("overspent", T0, 100, 150, -50.0),
    ("instant-in-the-future", T0 + dt.timedelta(seconds=10), 100, 0, 110.0),
]


@pytest.mark.parametrize("since, budget, elapsed, left", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_seconds_left(since: dt.datetime | None, budget: int | None, elapsed: float, left: float | None) -> None:
    now = T0 + dt.timedelta(seconds=elapsed)
    assert seconds_left(since, budget, now) == left
    assert deadline.remaining(since, budget, now) == left == ttl.remaining(since, budget, now)
