"""policies/suspend.py: runPolicy.suspend deletes the job's pods (finished ones too) while true, and a
resume recreates every replica fresh."""

from __future__ import annotations

import datetime as dt

import pytest

from garfield_operator import constants as C
from garfield_operator.observe import PodView
from garfield_operator.policies import suspend
from garfield_operator.reconcile import Observed, decide

from support.decisions import IMAGE, T0, apply, running, running_job


def view(name: str, phase: str, terminating: bool = False) -> PodView:
    return PodView(name=name, uid=f"uid-{name}", role="worker", index=0, phase=phase, ready=phase == "Running",
                   terminating=terminating, replacement=False, pod_ip="")


# (id, pods as (name, phase, terminating), the pods a suspend deletes)
CASES: list[tuple[str, list[tuple[str, str, bool]], list[str]]] = [
    ("none", [], []),
    ("every-phase", [("a", "Pending", False), ("b", "Running", False), ("c", "Succeeded", False),
                     ("d", "Failed", False), ("e", "Unknown", False)], ["a", "b", "c", "d", "e"]),
    ("terminating-left-alone", [("a", "Running", True), ("b", "Running", False)], ["b"]),
]


@pytest.mark.parametrize("pods, deleted", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_pods_to_delete(pods: list[tuple[str, str, bool]], deleted: list[str]) -> None:
    assert [v.name for v in suspend.pods_to_delete([view(*p) for p in pods])] == deleted


def test_suspend_deletes_pods_and_resume_recreates_them() -> None:
    stored, created = running_job(run_policy={"activeDeadlineSeconds": 600})
    stored["spec"]["runPolicy"]["suspend"] = True
    pods = running(stored, created)
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    assert len(d.delete_pods) == 6 and d.create_pods == []
    stored = apply(stored, d)
    assert stored["status"]["phase"] == C.SUSPENDED and "startTime" not in stored["status"]
    assert "createdReplicas" not in stored["status"]  # so resumed pods are first pods, not replacements
    stored["spec"]["runPolicy"]["suspend"] = False
    later = T0 + dt.timedelta(hours=1)
    d = decide(Observed(stored, [], True, later), IMAGE)
    assert len(d.create_pods) == 6
    assert not any(C.ANNOTATION_REPLACEMENT in p["metadata"].get("annotations", {}) for p in d.create_pods)
    stored = apply(stored, d)
    assert stored["status"]["startTime"] == "2026-01-01T13:00:00Z"  # the deadline clock restarts
    assert {e.reason for e in d.events} >= {C.R_RESUMED}
