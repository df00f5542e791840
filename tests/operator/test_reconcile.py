"""The operator's decisions as pure functions: observed job + pods + clock -> what to do.

No cluster: pod creation and rendering, progress, idempotence and the job's lifecycle around the
policies, in milliseconds; each run policy's edges are pinned in its own file, tests/operator/policies/
(failure and backoff, deadline, suspend, completion quorum, cleanPodPolicy, TTL). The cluster tests
show the same paths live.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from garfield_operator import constants as C
from garfield_operator.reconcile import Decision, Observed, decide
from garfield_operator.rendering import NetworkPolicyOptions, render_pod

from support.decisions import IMAGE, T0, apply, first_pass, job, pod, running, running_job


def test_fresh_job_creates_service_and_every_pod_once() -> None:
    body = job()
    stored, d = first_pass(body)
    assert d.create_service is not None and d.create_service["spec"]["clusterIP"] == "None"
    assert [p["metadata"]["name"] for p in d.create_pods] == ["j-server-0"] + [f"j-worker-{i}" for i in range(5)]
    assert stored["status"]["startTime"] == "2026-01-01T12:00:00Z"
    assert stored["status"]["phase"] == C.PENDING
    assert stored["status"]["replicaStatuses"]["workers"]["active"] == 5
    assert [e.reason for e in d.events] == [C.R_PODS_CREATED]
    assert "createdReplicas" not in stored["status"]  # created, not yet seen: a refused create is no pod
    # The pods now exist: nothing to do but record that every replica has had a pod.
    pods = [pod(m) for m in d.create_pods]
    d2 = decide(Observed(stored, pods, True, T0 + dt.timedelta(seconds=1)), IMAGE)
    assert d2.create_pods == [] and d2.delete_pods == [] and d2.create_service is None
    assert d2.status_patch == {"createdReplicas": ["j-server-0"] + [f"j-worker-{i}" for i in range(5)]}
    assert d2.events == []
    # Same state again: no status write.
    d3 = decide(Observed(apply(stored, d2), pods, True, T0 + dt.timedelta(seconds=2)), IMAGE)
    assert d3.create_pods == [] and d3.delete_pods == [] and d3.status_patch is None and d3.events == []


def test_pod_rendering_gpu_requests_equal_limits_and_owner() -> None:
    body = job(image="my/image:2")
    body["spec"]["workers"]["template"] = {"resources": {"requests": {"nvidia.com/gpu": 2, "cpu": "1"}},
                                          "env": [{"name": "EXTRA", "value": "x"}]}
    _, d = first_pass(body)
    w = next(p for p in d.create_pods if p["metadata"]["name"] == "j-worker-0")
    c = w["spec"]["containers"][0]
    assert c["image"] == "my/image:2"
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert c["resources"]["requests"] == {"nvidia.com/gpu": "2", "cpu": "1"}
    assert {"name": "EXTRA", "value": "x"} in c["env"]
    ref = w["metadata"]["ownerReferences"][0]
    assert ref["uid"] == "uid-1" and ref["controller"] and ref["kind"] == "ByzantineTrainingJob"
    assert w["spec"]["restartPolicy"] == "Never" and w["spec"]["subdomain"] == "j"
    assert w["metadata"]["labels"][C.LABEL_INDEX] == "0" and C.ANNOTATION_REPLACEMENT not in w["metadata"]["annotations"]


def test_byzantine_replicas_are_labelled() -> None:
    body = job(attack={"workers": {"count": 1, "name": "signflip"}})
    _, d = first_pass(body)
    labelled = [p["metadata"]["name"] for p in d.create_pods if p["metadata"]["labels"].get(C.LABEL_BYZANTINE)]
    assert labelled == ["j-worker-4"]


def test_invalid_spec_fails_once_with_one_event_and_creates_nothing() -> None:
    body = job(workers=4, worker_f=1, gar="krum")
    stored, d = first_pass(body)
    assert d.create_pods == [] and d.create_service is None
    assert stored["status"]["phase"] == C.FAILED
    inv = next(c for c in stored["status"]["conditions"] if c["type"] == C.COND_INVALID)
    assert inv["reason"] == C.R_INVALID_SPEC and "krum needs n >= 2f+3" in inv["message"]
    assert [e.type for e in d.events] == ["Warning"]
    d2 = decide(Observed(stored, [], False, T0 + dt.timedelta(seconds=5)), IMAGE)
    assert d2.events == [] and d2.status_patch is None


def test_running_sets_progress_targets_of_correct_servers_only() -> None:
    stored, created = running_job(servers=4, server_f=1, attack={"servers": {"count": 1, "name": "random"}})
    pods = running(stored, created)
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    assert [t.pod for t in d.progress_targets] == ["j-server-0", "j-server-1", "j-server-2"]
    d = decide(Observed(stored, pods, True, T0, progress={"step": 7, "loss": 0.3, "updateTime": "x"}), IMAGE)
    assert d.status_patch["progress"] == {"step": 7, "loss": 0.3, "updateTime": "x", "totalSteps": 100}


def test_terminating_pod_is_not_recreated_until_gone() -> None:
    stored, created = running_job()
    pods = running(stored, created)
    pods[2] = pod(created[2], "Running", deleting=True)
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    assert d.create_pods == []


def test_condition_transition_time_kept_while_status_unchanged() -> None:
    stored, created = running_job()
    pods = running(stored, created)
    before = {c["type"]: c["lastTransitionTime"] for c in stored["status"]["conditions"]}
    d = decide(Observed(stored, pods, True, T0 + dt.timedelta(minutes=5)), IMAGE)
    after = apply(stored, d)
    assert {c["type"]: c["lastTransitionTime"] for c in after["status"]["conditions"]} == before


def test_deleted_job_is_left_alone() -> None:
    body = job()
    body["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    d = decide(Observed(body, [], False, T0), IMAGE)
    assert d == Decision()


def test_render_pod_replacement_annotation() -> None:
    from garfield.plan import ClusterDNS, make_plan
    from garfield.spec.validation import validate_manifest

    body = job()
    spec_job = validate_manifest({k: body[k] for k in ("apiVersion", "kind", "spec")}
                                 | {"metadata": {"name": "j", "namespace": "ns"}})
    plan = make_plan(spec_job, ClusterDNS("ns"))
    p = render_pod(body, plan, plan.replicas[1], IMAGE, replacement=True)
    assert p["metadata"]["annotations"][C.ANNOTATION_REPLACEMENT] == "true"
    env = {e["name"]: e["value"] for e in p["spec"]["containers"][0]["env"]}
    assert env["GARFIELD_SERVERS"] == "j-server-0.j.ns.svc:50051"
    security = p["spec"]["containers"][0]["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_decentralized_job_runs_peers_and_completes_on_peer_quorum() -> None:
    body = job(workers=5, worker_f=1, servers=None)
    stored, d = first_pass(body)
    created = d.create_pods
    assert [p["metadata"]["labels"][C.LABEL_ROLE] for p in created] == ["peer"] * 5
    env = {e["name"]: e["value"] for e in created[0]["spec"]["containers"][0]["env"]}
    assert env["GARFIELD_SERVERS"] == "" and env["GARFIELD_WORKERS"].count(",") == 4
    pods = running(stored, created)
    stored = apply(stored, decide(Observed(stored, pods, True, T0), IMAGE))
    assert stored["status"]["phase"] == C.RUNNING and stored["status"]["replicaStatuses"]["workers"]["ready"] == 5
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    assert [t.pod for t in d.progress_targets] == [f"j-peer-{i}" for i in range(5)]
    pods = running(stored, created, **{f"j-peer-{i}": "Succeeded" for i in range(4)})
    stored = apply(stored, decide(Observed(stored, pods, True, T0), IMAGE))
    assert stored["status"]["phase"] == C.SUCCEEDED


def test_finished_job_edited_into_an_invalid_spec_keeps_its_outcome() -> None:
    stored, created = running_job()
    pods = running(stored, created, **{"j-server-0": "Succeeded"})
    stored = apply(stored, decide(Observed(stored, pods, True, T0), IMAGE))
    assert stored["status"]["phase"] == C.SUCCEEDED
    stored["spec"]["workers"]["gar"]["name"] = "krum"  # invalid: q=4 replies < 2f+3=5
    fresh = copy.deepcopy(stored)
    del fresh["status"]
    assert decide(Observed(fresh, [], False, T0), IMAGE).status_patch["phase"] == C.FAILED
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    assert d.status_patch is None or d.status_patch.get("phase") is None
    assert d.events == []


def finished_with(stored: dict[str, Any], created: list[dict[str, Any]],
                  finals: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The job's pods, those named in `finals` Succeeded with that last status as their container's
    termination message (what the node writes when it is done)."""
    pods = running(stored, created, **{name: "Succeeded" for name in finals})
    for p in pods:
        name = p["metadata"]["name"]
        if name in finals:
            p["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = json.dumps(finals[name])
    return pods


def test_success_reports_the_final_result_from_termination_messages() -> None:
    """A finished server's status endpoint is gone: its container's termination message (its last
    status, written by the node) becomes status.progress, median step over the correct servers."""
    stored, created = running_job(servers=4, server_f=1)
    finals = {"j-server-0": {"step": 100, "accuracy": 0.93, "loss": 0.2, "rejected": {"stale": 2}},
              "j-server-1": {"step": 100, "accuracy": 0.94, "loss": 0.19},
              "j-server-2": {"step": 99, "accuracy": 0.10}}
    pods = finished_with(stored, created, finals)
    stored = apply(stored, decide(Observed(stored, pods, True, T0), IMAGE))
    assert stored["status"]["phase"] == C.SUCCEEDED
    progress = stored["status"]["progress"]
    assert progress["step"] == 100 and progress["accuracy"] == 0.93 and progress["totalSteps"] == 100
    assert progress["rejectedMessages"] == 2
    assert "models" not in stored["status"]  # these servers wrote no model (no spec.output)


def test_success_names_each_correct_servers_model() -> None:
    stored, created = running_job(servers=4, server_f=1)
    model = {"path": "/results/j-server-0/model.pt", "sha256": "ab" * 32, "format": "torch.state_dict",
             "step": 100, "accuracy": 0.93}
    finals = {"j-server-0": {"step": 100, "accuracy": 0.93, "model": model},
              "j-server-1": {"step": 100, "accuracy": 0.94, "model": {**model, "path": "/results/j-server-1/model.pt"}},
              "j-server-2": {"step": 100, "accuracy": 0.94, "model": {"path": 7}}}  # not a model: left out
    pods = finished_with(stored, created, finals)
    stored = apply(stored, decide(Observed(stored, pods, True, T0), IMAGE))
    assert stored["status"]["phase"] == C.SUCCEEDED
    assert stored["status"]["models"] == [{"replica": "j-server-0", **model},
                                          {"replica": "j-server-1", **model, "path": "/results/j-server-1/model.pt"}]


def test_success_without_termination_messages_keeps_the_last_progress() -> None:
    stored, created = running_job(servers=4, server_f=1)
    stored["status"]["progress"] = {"step": 97, "accuracy": 0.9, "totalSteps": 100}
    pods = running(stored, created, **{f"j-server-{i}": "Succeeded" for i in range(3)})
    stored = apply(stored, decide(Observed(stored, pods, True, T0), IMAGE))
    assert stored["status"]["phase"] == C.SUCCEEDED and stored["status"]["progress"]["step"] == 97


def test_each_job_gets_its_own_network_policy_when_the_operator_makes_them() -> None:
    body = job()
    options = NetworkPolicyOptions({"app.kubernetes.io/component": "operator"},
                                   [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}])
    stored = copy.deepcopy(body)
    d = decide(Observed(stored, [], False, T0, network_policy_exists=False), IMAGE, options)
    policy = d.create_network_policy
    assert policy is not None and policy["metadata"]["name"] == "j" and policy["metadata"]["ownerReferences"]
    assert policy["spec"]["podSelector"] == {"matchLabels": {C.LABEL_JOB: "j"}}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    grpc, status = policy["spec"]["ingress"]
    assert grpc == {"from": [{"podSelector": {"matchLabels": {C.LABEL_JOB: "j"}}}],
                    "ports": [{"protocol": "TCP", "port": 50051}]}
    operator_pods = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}}}
    assert status == {"from": [operator_pods, {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                      "ports": [{"protocol": "TCP", "port": 9090}]}
    # present already, or not made by this operator: nothing to create
    assert decide(Observed(stored, [], False, T0, network_policy_exists=True), IMAGE, options).create_network_policy is None
    assert decide(Observed(stored, [], False, T0, network_policy_exists=False), IMAGE).create_network_policy is None
