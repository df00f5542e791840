"""policies/ttl.py: runPolicy.ttlSecondsAfterFinished deletes a finished job this long after it finished."""

from __future__ import annotations

import datetime as dt

import pytest

from garfield_operator import constants as C
from garfield_operator.policies import ttl
from garfield_operator.reconcile import Observed, decide

from support.decisions import IMAGE, T0, apply, running, running_job

# (id, completion time, ttlSecondsAfterFinished, seconds since T0, seconds until deletion or None)
REMAINING: list[tuple[str, dt.datetime | None, int | None, float, float | None]] = [
    ("not-finished", None, 100, 50, None),
    ("kept-forever", T0, None, 50, None),
    ("half-way", T0, 100, 50, 50.0),
    ("zero-ttl-deletes-at-once", T0, 0, 0, 0.0),
    ("past", T0, 100, 150, -50.0),
]


@pytest.mark.parametrize("completion, seconds, elapsed, left", [c[1:] for c in REMAINING], ids=[c[0] for c in REMAINING])
def test_remaining(completion: dt.datetime | None, seconds: int | None, elapsed: float, left: float | None) -> None:
    assert ttl.remaining(completion, seconds, T0 + dt.timedelta(seconds=elapsed)) == left


def test_ttl_deletes_the_job_after_completion() -> None:
    stored, created = running_job(run_policy={"ttlSecondsAfterFinished": 100, "cleanPodPolicy": "None"})
    pods = running(stored, created, **{"j-server-0": "Succeeded"})
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    stored = apply(stored, d)
    assert stored["status"]["phase"] == C.SUCCEEDED and d.delete_pods == [] and d.requeue_after == pytest.approx(100)
    d = decide(Observed(stored, pods, True, T0 + dt.timedelta(seconds=50)), IMAGE)
    assert not d.delete_job and d.requeue_after == pytest.approx(50)
    d = decide(Observed(stored, pods, True, T0 + dt.timedelta(seconds=100)), IMAGE)
    assert d.delete_job
