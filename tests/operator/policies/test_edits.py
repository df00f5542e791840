"""policies/edits.py: a running job takes runPolicy edits live and rejects every other edit (pods
keep the spec they started with) in the SpecChangeRejected condition, until it is reverted or the
job is suspended, whose resume starts from the spec as it is then."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from garfield_operator import constants as C
from garfield_operator.policies import edits
from garfield_operator.reconcile import Observed, decide

from support.decisions import IMAGE, T0, apply, pod, running, running_job

APPLIED: dict[str, Any] = {"training": {"steps": 100, "batchSize": 32}, "workers": {"replicas": 5, "gar": {"name": "median"}},
                           "runPolicy": {"backoffLimit": 3}}

# (id, the current spec as a change of APPLIED, the fields rejected)
CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unchanged", {}, []),
    ("run-policy-only", {"runPolicy": {"backoffLimit": 9, "suspend": True}}, []),
    ("one-field", {"training": {"steps": 200, "batchSize": 32}}, ["spec.training.steps"]),
    ("nested-and-run-policy", {"workers": {"replicas": 4, "gar": {"name": "krum"}}, "runPolicy": {}},
     ["spec.workers.gar.name", "spec.workers.replicas"]),
    ("field-added", {"image": "registry.test/other:2"}, ["spec.image"]),
    ("field-removed", {"training": None}, ["spec.training"]),
    ("list-compared-whole", {"workers": {"replicas": 5, "gar": {"name": "median"}, "preAggregation": [{"name": "nnm"}]}},
     ["spec.workers.preAggregation"]),
]


def changed(change: dict[str, Any]) -> dict[str, Any]:
    current = copy.deepcopy(APPLIED)
    for key, value in change.items():
        if value is None:
            current.pop(key)
        else:
            current[key] = value
    return current


@pytest.mark.parametrize("change, rejected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rejected_changes(change: dict[str, Any], rejected: list[str]) -> None:
    assert edits.rejected_changes(APPLIED, changed(change)) == rejected


@pytest.mark.parametrize("change", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_effective_spec_is_the_applied_one_with_the_current_run_policy(change: dict[str, Any]) -> None:
    current = changed(change)
    effective = edits.effective_spec(APPLIED, current)
    assert {k: v for k, v in effective.items() if k != "runPolicy"} == {k: v for k, v in APPLIED.items() if k != "runPolicy"}
    assert effective.get("runPolicy") == current.get("runPolicy")
    assert edits.rejected_changes(APPLIED, effective) == []


def test_describe_names_at_most_a_few_fields() -> None:
    fields = [f"spec.f{i}" for i in range(edits.NAMED_AT_MOST + 3)]
    message = edits.describe(fields)
    assert message.startswith(", ".join(fields[:edits.NAMED_AT_MOST]) + " and 3 more changed while the job runs")
    assert "runPolicy.suspend" in message and "Applied live: runPolicy" in message


def rejection(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == C.COND_SPEC_CHANGE_REJECTED), None)


def test_an_edit_outside_run_policy_is_rejected_with_a_condition_and_one_event() -> None:
    stored, created = running_job()
    pods = running(stored, created)
    edited = copy.deepcopy(stored)
    edited["spec"]["workers"]["replicas"] = 4
    edited["spec"]["training"]["steps"] = 999
    d = decide(Observed(edited, pods, True, T0), IMAGE)
    assert d.create_pods == [] and d.delete_pods == []  # worker 4 is not deleted: the pods keep their spec
    after = apply(edited, d)
    cond = rejection(after["status"])
    assert cond is not None and cond["status"] == "True" and cond["reason"] == C.R_CHANGED_WHILE_RUNNING
    assert cond["message"].startswith("spec.training.steps, spec.workers.replicas changed while the job runs")
    assert [e.reason for e in d.events] == [C.R_CHANGED_WHILE_RUNNING]
    assert after["status"]["phase"] == C.RUNNING and after["status"]["progress"]["totalSteps"] == 100
    assert after["status"]["appliedSpec"]["workers"]["replicas"] == 5
    d2 = decide(Observed(after, pods, True, T0), IMAGE)  # the same edit again: no second event, no write
    assert d2.events == [] and d2.status_patch is None

    reverted = copy.deepcopy(after)
    reverted["spec"] = copy.deepcopy(stored["spec"])
    d3 = decide(Observed(reverted, pods, True, T0), IMAGE)
    cond = rejection(apply(reverted, d3)["status"])
    assert cond is not None and cond["status"] == "False" and cond["reason"] == C.R_SPEC_APPLIED
    assert [e.reason for e in d3.events] == [C.R_SPEC_APPLIED]


def test_a_lost_pod_is_recreated_from_the_applied_spec_not_the_edited_one() -> None:
    stored, created = running_job()
    edited = copy.deepcopy(stored)
    edited["spec"]["training"]["steps"] = 999
    pods = running(stored, created, **{"j-worker-2": "Failed"})
    d = decide(Observed(edited, pods, True, T0), IMAGE)
    assert [x.name for x in d.delete_pods] == ["j-worker-2"]
    gone = [p for p in pods if p["metadata"]["name"] != "j-worker-2"]
    d2 = decide(Observed(apply(edited, d), gone, True, T0), IMAGE)
    (again,) = d2.create_pods
    digest = C.ANNOTATION_SPEC_HASH
    assert again["metadata"]["annotations"][digest] == created[0]["metadata"]["annotations"][digest]


def test_run_policy_edits_apply_live() -> None:
    stored, created = running_job()
    edited = copy.deepcopy(stored)
    edited["spec"]["runPolicy"]["activeDeadlineSeconds"] = 60
    pods = running(stored, created)
    d = decide(Observed(edited, pods, True, T0 + dt.timedelta(seconds=61)), IMAGE)
    after = apply(edited, d)
    assert after["status"]["phase"] == C.FAILED
    assert any(c["reason"] == C.R_DEADLINE for c in after["status"]["conditions"])
    assert rejection(after["status"]) is None


def test_an_invalid_edit_of_a_running_job_is_rejected_and_the_job_runs_on() -> None:
    stored, created = running_job()
    edited = copy.deepcopy(stored)
    edited["spec"]["workers"]["byzantine"] = 3  # f=3 of 5 workers: invalid for median
    pods = running(stored, created)
    d = decide(Observed(edited, pods, True, T0), IMAGE)
    after = apply(edited, d)
    assert after["status"]["phase"] == C.RUNNING and d.create_pods == [] and d.delete_pods == []
    assert not any(c["type"] == C.COND_INVALID for c in after["status"]["conditions"])
    cond = rejection(after["status"])
    assert cond is not None and cond["reason"] == C.R_INVALID_SPEC and "spec.workers" in cond["message"]
    assert [e.reason for e in d.events] == [C.R_INVALID_SPEC]


def test_suspend_lets_a_rejected_edit_apply_on_resume() -> None:
    stored, created = running_job()
    edited = copy.deepcopy(stored)
    edited["spec"]["workers"]["replicas"] = 4
    pods = running(stored, created)
    stored = apply(edited, decide(Observed(edited, pods, True, T0), IMAGE))
    stored["spec"]["runPolicy"]["suspend"] = True
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    assert len(d.delete_pods) == 6  # the applied spec's six pods, worker 4 included
    stored = apply(stored, d)
    assert "appliedSpec" not in stored["status"]
    cond = rejection(stored["status"])
    assert cond is not None and cond["status"] == "False" and cond["reason"] == C.R_SPEC_APPLIED
    stored["spec"]["runPolicy"]["suspend"] = False
    d = decide(Observed(stored, [], True, T0), IMAGE)
    assert sorted(p["metadata"]["name"] for p in d.create_pods) == [
        "j-server-0", "j-worker-0", "j-worker-1", "j-worker-2", "j-worker-3"]
    assert apply(stored, d)["status"]["appliedSpec"]["workers"]["replicas"] == 4


def test_pods_outside_the_applied_plan_are_deleted() -> None:
    stored, created = running_job()
    stray = copy.deepcopy(created[-1])
    stray["metadata"]["name"] = "j-worker-9"
    stray["metadata"]["labels"][C.LABEL_INDEX] = "9"
    pods = running(stored, created) + [pod(stray, "Running", ready=True)]
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    assert [x.name for x in d.delete_pods] == ["j-worker-9"]
