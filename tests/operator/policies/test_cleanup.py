"""policies/cleanup.py: runPolicy.cleanPodPolicy, which pods a finished job deletes: All, Running
(the default: the unfinished ones) or None."""

from __future__ import annotations

from typing import Any

import pytest

from garfield_operator import constants as C
from garfield_operator.observe import PodView
from garfield_operator.policies import cleanup
from garfield_operator.reconcile import Observed, decide

from support.decisions import IMAGE, T0, apply, running, running_job

PODS = [("a", "Pending", False), ("b", "Running", False), ("c", "Succeeded", False), ("d", "Failed", False),
        ("e", "Unknown", False), ("f", "Running", True)]


def view(name: str, phase: str, terminating: bool) -> PodView:
    return PodView(name=name, uid=f"uid-{name}", role="worker", index=0, phase=phase, ready=phase == "Running",
                   terminating=terminating, replacement=False, pod_ip="")


# (policy, the pods of PODS it deletes: never one already terminating)
POLICIES = [("All", ["a", "b", "c", "d", "e"]), ("Running", ["a", "b", "e"]), ("None", [])]


@pytest.mark.parametrize("policy, deleted", POLICIES, ids=[p[0] for p in POLICIES])
def test_pods_to_delete(policy: str, deleted: list[str]) -> None:
    assert [v.name for v in cleanup.pods_to_delete(policy, [view(*p) for p in PODS])] == deleted


SERVERS_LEFT = {"j-server-3"}
WORKERS = {f"j-worker-{i}" for i in range(5)}
FINISHED = {f"j-server-{i}" for i in range(3)}
# (id, runPolicy, pods deleted once 3 of 4 servers succeeded)
ON_SUCCESS: list[tuple[str, dict[str, Any], set[str]]] = [
    # the default, Running: the still-running server and workers go, finished servers stay
    ("default-is-running", {}, SERVERS_LEFT | WORKERS),
    ("all", {"cleanPodPolicy": "All"}, SERVERS_LEFT | WORKERS | FINISHED),
    ("none", {"cleanPodPolicy": "None"}, set()),
]


@pytest.mark.parametrize("run_policy, deleted", [c[1:] for c in ON_SUCCESS], ids=[c[0] for c in ON_SUCCESS])
def test_succeeded_job_cleans_its_pods(run_policy: dict[str, Any], deleted: set[str]) -> None:
    stored, created = running_job(servers=4, server_f=1, run_policy=run_policy)
    pods = running(stored, created, **{name: "Succeeded" for name in FINISHED})
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    assert apply(stored, d)["status"]["phase"] == C.SUCCEEDED
    assert {x.name for x in d.delete_pods} == deleted
