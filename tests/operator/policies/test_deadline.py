"""policies/deadline.py: runPolicy.activeDeadlineSeconds fails the job (DeadlineExceeded) this long
after its pods first started, and cleans its running pods."""

from __future__ import annotations

import datetime as dt

import pytest

from garfield_operator import constants as C
from garfield_operator.policies import deadline
from garfield_operator.reconcile import Observed, decide

from support.decisions import IMAGE, T0, apply, running, running_job

# (id, start, activeDeadlineSeconds, seconds since T0, seconds remaining or None)
REMAINING: list[tuple[str, dt.datetime | None, int | None, float, float | None]] = [
    ("not-started", None, 60, 30, None),
    ("no-deadline", T0, None, 30, None),
    ("half-way", T0, 60, 30, 30.0),
    ("exactly-at", T0, 60, 60, 0.0),
    ("past", T0, 60, 61, -1.0),
]


@pytest.mark.parametrize("start, seconds, elapsed, left", [c[1:] for c in REMAINING], ids=[c[0] for c in REMAINING])
def test_remaining(start: dt.datetime | None, seconds: int | None, elapsed: float, left: float | None) -> None:
    assert deadline.remaining(start, seconds, T0 + dt.timedelta(seconds=elapsed)) == left


def test_deadline_fails_and_cleans_running_pods() -> None:
    stored, created = running_job(run_policy={"activeDeadlineSeconds": 60})
    pods = running(stored, created)
    d = decide(Observed(stored, pods, True, T0 + dt.timedelta(seconds=30)), IMAGE)
    assert d.requeue_after == pytest.approx(30, abs=1)
    d = decide(Observed(stored, pods, True, T0 + dt.timedelta(seconds=61)), IMAGE)
    stored = apply(stored, d)
    assert stored["status"]["phase"] == C.FAILED
    assert {x.name for x in d.delete_pods} == {p["metadata"]["name"] for p in pods}
