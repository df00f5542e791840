"""policies/failure.py: a role over its f fails the job (TooManyFailures); failed pods within f are
recreated as replacements, each recreation counting against runPolicy.backoffLimit. A replica whose
pod was never created (the apiserver refused its create) is not created yet, never a failure; one
that had a pod is lost until its replacement runs, even while the replacement's create is refused."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from garfield.lifecycle import Health
from garfield.plan import ClusterDNS, make_plan
from garfield.spec.validation import validate_manifest

from garfield_operator import constants as C
from garfield_operator.observe import PodView, replica_state
from garfield_operator.reconcile import Observed, decide

from support.decisions import IMAGE, T0, apply, first_pass, job, pod, running, running_job

# Recreation within f: test_failure_within_f_recreates_as_replacement, below.
# (id, job overrides, pod phases after Running, phase, condition reason, message part, pods recreated)
CASES: list[tuple[str, dict[str, Any], dict[str, str], str, str, str, list[str]]] = [
    ("restart-never-keeps-running-within-f", {"run_policy": {"restartPolicy": "Never"}}, {"j-worker-1": "Failed"},
     C.RUNNING, "", "", []),
    ("backoff-limit-exceeded", {"run_policy": {"backoffLimit": 0}}, {"j-worker-1": "Failed"},
     C.FAILED, C.R_BACKOFF_LIMIT, "backoffLimit=0", []),
    ("two-workers-over-f", {}, {"j-worker-0": "Failed", "j-worker-1": "Failed"},
     C.FAILED, C.R_TOO_MANY_FAILURES, "2 workers lost", []),
    # f=0 servers: losing the one server is more than f.
    ("ssmw-server-lost", {}, {"j-server-0": "Failed"}, C.FAILED, C.R_TOO_MANY_FAILURES, "", []),
]


@pytest.mark.parametrize("overrides, phases, phase, reason, message, recreated",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_failed_pods(overrides: dict[str, Any], phases: dict[str, str], phase: str, reason: str, message: str,
                     recreated: list[str]) -> None:
    stored, created = running_job(**overrides)
    pods = running(stored, created, **phases)
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    stored = apply(stored, d)
    assert stored["status"]["phase"] == phase
    if reason:
        cond = next(c for c in stored["status"]["conditions"] if c["type"] == C.COND_FAILED)
        assert cond["reason"] == reason and message in cond["message"]
    else:
        assert [p["metadata"]["name"] for p in d.create_pods] == recreated
        assert [x.name for x in d.delete_pods] == recreated  # a failed pod is deleted only to be recreated
        assert stored["status"]["replicaStatuses"]["workers"]["failed"] == 1


def test_failure_within_f_recreates_as_replacement() -> None:
    stored, created = running_job()
    pods = running(stored, created, **{"j-worker-2": "Failed"})
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    assert [(x.name, x.grace_seconds) for x in d.delete_pods] == [("j-worker-2", 0)]
    assert [p["metadata"]["name"] for p in d.create_pods] == ["j-worker-2"]
    assert d.create_pods[0]["metadata"]["annotations"][C.ANNOTATION_REPLACEMENT] == "true"
    stored = apply(stored, d)
    assert stored["status"]["restarts"] == 1 and stored["status"]["replicaStatuses"]["workers"]["failed"] == 1
    assert stored["status"]["phase"] == C.RUNNING  # 4 of 5 workers still form the quorum
    assert any(e.reason == C.R_POD_FAILED and "j-worker-2" in e.message for e in d.events)
    # The replacement is pending: the worker is still lost; one more failure is f+1.
    pods = [p for p in pods if p["metadata"]["name"] != "j-worker-2"] + [pod(d.create_pods[0])]
    pods = [pod(p, "Failed", terminated={"exitCode": 2}) if p["metadata"]["name"] == "j-worker-0" else p for p in pods]
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    stored = apply(stored, d)
    assert stored["status"]["phase"] == C.FAILED
    cond = next(c for c in stored["status"]["conditions"] if c["type"] == C.COND_FAILED)
    assert cond["reason"] == C.R_TOO_MANY_FAILURES and "2 workers lost" in cond["message"]


# -- never created vs lost: how a replica's pod (or its absence) feeds garfield.lifecycle ------------------
REFUSED = 'pods "j-worker-0" is forbidden: no PriorityClass with name gold was found'


def _view(phase: str, replacement: bool = False, terminating: bool = False) -> PodView:
    return PodView(name="j-worker-0", uid="uid-w0", role="worker", index=0, phase=phase, ready=phase == "Running",
                   terminating=terminating, replacement=replacement, pod_ip="",
                   failure="Error: exit code 1" if phase == "Failed" else "")


# (id, the replica's pod now (None: none), whether it had a pod before, its last create's refusal,
#  its health, the detail a failure message quotes)
STATES: list[tuple[str, PodView | None, bool, str, Health, str]] = [
    ("never-created", None, False, "", Health.STARTING, ""),
    ("never-created-create-refused", None, False, REFUSED, Health.STARTING, ""),
    ("first-pod-pending-after-refusals", _view("Pending"), True, "", Health.STARTING, ""),
    ("first-pod-running", _view("Running"), True, "", Health.RUNNING, ""),
    ("pod-failed", _view("Failed"), True, "", Health.LOST, "Error: exit code 1"),
    ("pod-deleted", _view("Running", terminating=True), True, "", Health.LOST, "deleted"),
    ("pod-gone", None, True, "", Health.LOST, "its pod is gone"),
    ("replacement-refused", None, True, REFUSED, Health.LOST, f"its replacement was refused: {REFUSED}"),
    ("replacement-pending", _view("Pending", replacement=True), True, "", Health.LOST, ""),
    ("replacement-running", _view("Running", replacement=True), True, "", Health.RUNNING, ""),
    ("finished", _view("Succeeded"), True, "", Health.FINISHED, ""),
]


@pytest.mark.parametrize("v, created, refused, health, detail", [c[1:] for c in STATES], ids=[c[0] for c in STATES])
def test_a_replica_never_created_is_not_lost(v: PodView | None, created: bool, refused: str, health: Health,
                                              detail: str) -> None:
    plan = make_plan(validate_manifest(job(workers=4)), ClusterDNS("ns"))
    replica = next(r for r in plan.replicas if r.name == "j-worker-0")
    state = replica_state(replica, v, created, refused)
    assert (state.health, state.detail) == (health, detail)


def test_refused_creates_after_the_start_keep_the_job_pending_until_they_succeed() -> None:
    """The server's pod is created, every worker's is refused (a PriorityClass not there yet): more
    than f refused creates, pass after pass, fail nothing; once the class exists the workers' first
    pods are no replacements and the job runs."""
    stored, d = first_pass(job(workers=4, worker_f=1))
    server = [m for m in d.create_pods if m["metadata"]["name"] == "j-server-0"]
    workers = [m for m in d.create_pods if m["metadata"]["name"] != "j-server-0"]
    refused = {m["metadata"]["name"]: REFUSED.replace("j-worker-0", m["metadata"]["name"]) for m in workers}
    for i in range(1, 4):  # the controller's retries
        d = decide(Observed(stored, [pod(m) for m in server], True, T0 + dt.timedelta(seconds=i),
                            create_failures=refused), IMAGE)
        stored = apply(stored, d)
        assert stored["status"]["phase"] == C.PENDING and not any(
            c["type"] == C.COND_FAILED for c in stored["status"]["conditions"])
        assert stored["status"]["createdReplicas"] == ["j-server-0"]
        degraded = next(c for c in stored["status"]["conditions"] if c["type"] == C.COND_DEGRADED)
        assert degraded["status"] == "True" and degraded["reason"] == C.R_FAILED_CREATE
        assert "j-worker-3: the apiserver refused to create it: " in degraded["message"]
        assert sorted(p["metadata"]["name"] for p in d.create_pods) == sorted(refused)
        assert not any(C.ANNOTATION_REPLACEMENT in p["metadata"]["annotations"] for p in d.create_pods)
    # The retry succeeded: the workers' first pods exist, Pending.
    pods = [pod(m) for m in server] + [pod(m) for m in d.create_pods]
    d = decide(Observed(stored, pods, True, T0 + dt.timedelta(seconds=5)), IMAGE)
    stored = apply(stored, d)
    assert stored["status"]["phase"] == C.PENDING and d.create_pods == [] and d.delete_pods == []
    assert stored["status"]["createdReplicas"] == ["j-server-0"] + [f"j-worker-{i}" for i in range(4)]
    degraded = next(c for c in stored["status"]["conditions"] if c["type"] == C.COND_DEGRADED)
    assert degraded["status"] == "False" and degraded["reason"] == C.R_PODS_HEALTHY
    d = decide(Observed(stored, running(stored, [p for p in pods]), True, T0 + dt.timedelta(seconds=6)), IMAGE)
    assert apply(stored, d)["status"]["phase"] == C.RUNNING


def test_a_lost_replica_stays_lost_while_its_replacement_is_refused() -> None:
    """f=1: worker-2 failed and its replacement's create is refused; worker-0 failing too is f+1."""
    stored, created = running_job()
    pods = running(stored, created, **{"j-worker-2": "Failed"})
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    stored = apply(stored, d)
    assert stored["status"]["phase"] == C.RUNNING
    pods = [p for p in pods if p["metadata"]["name"] != "j-worker-2"]  # deleted; the replacement refused
    refused = {"j-worker-2": "exceeded quota: pods"}
    d = decide(Observed(stored, pods, True, T0 + dt.timedelta(seconds=1), create_failures=refused), IMAGE)
    stored = apply(stored, d)
    assert stored["status"]["phase"] == C.RUNNING  # 4 of 5 workers: the quorum; worker-2 counts as lost
    assert d.create_pods[0]["metadata"]["annotations"][C.ANNOTATION_REPLACEMENT] == "true"
    pods = [pod(p, "Failed", terminated={"exitCode": 2}) if p["metadata"]["name"] == "j-worker-0" else p for p in pods]
    d = decide(Observed(stored, pods, True, T0 + dt.timedelta(seconds=2), create_failures=refused), IMAGE)
    stored = apply(stored, d)
    assert stored["status"]["phase"] == C.FAILED
    cond = next(c for c in stored["status"]["conditions"] if c["type"] == C.COND_FAILED)
    assert cond["reason"] == C.R_TOO_MANY_FAILURES and "2 workers lost" in cond["message"]
    assert "j-worker-2 (its replacement was refused: exceeded quota: pods)" in cond["message"]
