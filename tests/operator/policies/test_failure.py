"""policies/failure.py: a role over its f fails the job (TooManyFailures); failed pods within f are
recreated as replacements, each recreation counting against runPolicy.backoffLimit."""

from __future__ import annotations

from typing import Any

import pytest

from garfield_operator import constants as C
from garfield_operator.reconcile import Observed, decide

from support.decisions import IMAGE, T0, apply, pod, running, running_job

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
