"""The fuller pod template in the operator's pure half: each template field as the pods carry it,
next to (never instead of) what Garfield sets: its TLS volume and mount, labels, annotations,
command, ports, restart policy, hostname and subdomain, and its security defaults. The live
half (the real apiserver accepting such pods) is test_pod_template_cluster.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from garfield.spec.contract import REPLICA_CONTRACT, TLS_VOLUME

from garfield_operator import constants as C
from garfield_operator.reconcile import Observed, decide

from support.decisions import IMAGE, T0, job
from support.manifests import full_template

DEFAULT_CONTAINER_CONTEXT = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                             "seccompProfile": {"type": "RuntimeDefault"}}


def _pods(template: dict[str, Any], **spec: Any) -> dict[str, dict[str, Any]]:
    body = job(**spec)
    body["spec"]["workers"]["template"] = copy.deepcopy(template)
    d = decide(Observed(body, [], False, T0), IMAGE)
    assert d.create_pods, d.status_patch
    return {p["metadata"]["name"]: p for p in d.create_pods}


def _worker(template: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return _pods(template, **spec)["j-worker-0"]


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["spec"]["containers"]
    return container


# (template, where in the pod, expected value): one row per field.
FIELDS = [
    ({"serviceAccountName": "trainer"}, ("spec", "serviceAccountName"), "trainer"),
    ({"imagePullSecrets": [{"name": "registry"}]}, ("spec", "imagePullSecrets"), [{"name": "registry"}]),
    ({"affinity": {"nodeAffinity": {"x": 1}}}, ("spec", "affinity"), {"nodeAffinity": {"x": 1}}),
    ({"priorityClassName": "high"}, ("spec", "priorityClassName"), "high"),
    ({"schedulerName": "volcano"}, ("spec", "schedulerName"), "volcano"),
    ({"imagePullPolicy": "Always"}, ("container", "imagePullPolicy"), "Always"),
    ({"envFrom": [{"secretRef": {"name": "s"}}]}, ("container", "envFrom"), [{"secretRef": {"name": "s"}}]),
    ({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]}, ("spec", "volumes"),
     [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]),
    ({"volumes": [{"name": "d", "emptyDir": {}}], "volumeMounts": [{"name": "d", "mountPath": "/out"}]},
     ("container", "volumeMounts"), [{"name": "d", "mountPath": "/out"}]),
    ({"labels": {"team": "ml"}}, ("metadata", "labels", "team"), "ml"),
    ({"annotations": {"example.com/a": "b"}}, ("metadata", "annotations", "example.com/a"), "b"),
    ({"podSecurityContext": {"runAsUser": 1000}}, ("spec", "securityContext"), {"fsGroup": C.TLS_FS_GROUP, "runAsUser": 1000}),
    ({"podSecurityContext": {"fsGroup": 2000}}, ("spec", "securityContext"), {"fsGroup": 2000}),
    ({"securityContext": {"readOnlyRootFilesystem": True}}, ("container", "securityContext"),
     DEFAULT_CONTAINER_CONTEXT | {"readOnlyRootFilesystem": True}),
]


def _at(pod: dict[str, Any], where: tuple[str, ...]) -> Any:
    """The value at `where`; of the volumes and mounts, the user's (Garfield's TLS ones come first)."""
    value: Any = _container(pod) if where[0] == "container" else pod[where[0]]
    for key in where[1:]:
        value = value.get(key) if isinstance(value, dict) else None
    if where[-1] in ("volumes", "volumeMounts"):
        value = [v for v in value or [] if v["name"] != TLS_VOLUME]
    return value


@pytest.mark.parametrize("template, where, expected", FIELDS, ids=[next(iter(t)) + "-" + where[-1]
                                                                   for t, where, _ in FIELDS])
def test_each_template_field_is_rendered_into_the_role_pods(template: dict[str, Any], where: tuple[str, ...],
                                                             expected: Any) -> None:
    pods = _pods(template)
    for name, pod in pods.items():
        if name.startswith("j-worker-"):
            assert _at(pod, where) == expected, name
        else:  # the servers' template sets nothing
            assert _at(pod, where) != expected, name


def test_a_job_using_every_field_keeps_what_garfield_owns() -> None:
    plain, full = _worker({}), _worker(full_template())
    for key in ("restartPolicy", "hostname", "subdomain", "enableServiceLinks"):
        assert full["spec"][key] == plain["spec"][key]
    assert full["metadata"]["ownerReferences"] == plain["metadata"]["ownerReferences"]
    assert full["metadata"]["name"] == plain["metadata"]["name"]
    for key in ("name", "image", "command", "ports", "readinessProbe"):
        assert _container(full)[key] == _container(plain)[key]
    assert plain["metadata"]["labels"].items() <= full["metadata"]["labels"].items()
    assert set(plain["metadata"]["annotations"]) < set(full["metadata"]["annotations"])  # the spec hash, and the user's
    assert full["metadata"]["labels"]["team"] == "ml"
    assert full["spec"]["volumes"][0] == plain["spec"]["volumes"][0]  # the TLS volume, first
    assert _container(full)["volumeMounts"][0] == _container(plain)["volumeMounts"][0]
    # drop ALL kept beside the user's NET_RAW, the other defaults kept, the user's values added.
    assert _container(full)["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL", "NET_RAW"]},
        "seccompProfile": {"type": "RuntimeDefault"}, "readOnlyRootFilesystem": True, "runAsNonRoot": True}
    assert full["spec"]["securityContext"] == {"fsGroup": 2000, "runAsUser": 10001, "runAsGroup": 10001,
                                               "supplementalGroups": [3000]}


def test_env_from_cannot_set_the_replica_contract() -> None:
    """env wins over envFrom in Kubernetes: every contract variable is in env, empty when unset."""
    container = _container(_worker({"envFrom": [{"configMapRef": {"name": "cm"}}]}))
    env = {e["name"]: e["value"] for e in container["env"]}
    assert REPLICA_CONTRACT <= set(env)
    assert env["GARFIELD_ATTACK"] == "" and env["GARFIELD_ROLE"] == "worker"
    assert "GARFIELD_ATTACK" not in {e["name"] for e in _container(_worker({}))["env"]}  # as before without envFrom


def test_template_env_still_comes_after_the_contract() -> None:
    container = _container(_worker({"env": [{"name": "GARFIELD_THREADS", "value": "2"}],
                                    "envFrom": [{"secretRef": {"name": "s"}}]}))
    assert {"name": "GARFIELD_THREADS", "value": "2"} in container["env"]


def test_without_mutual_tls_the_user_volumes_and_context_stand_alone() -> None:
    pod = _worker({"volumes": [{"name": "d", "emptyDir": {}}], "volumeMounts": [{"name": "d", "mountPath": "/d"}],
                   "podSecurityContext": {"runAsUser": 1000}}, security={"mutualTLS": False})
    assert pod["spec"]["volumes"] == [{"name": "d", "emptyDir": {}}]
    assert _container(pod)["volumeMounts"] == [{"name": "d", "mountPath": "/d"}]
    assert pod["spec"]["securityContext"] == {"runAsUser": 1000}


def test_a_weaker_context_asked_for_is_rendered_and_posted_once_as_a_warning() -> None:
    body = job()
    body["spec"]["workers"]["template"] = {"securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
                                           "allowWeakerSecurityContext": True}
    d = decide(Observed(body, [], False, T0), IMAGE)
    worker = next(p for p in d.create_pods if p["metadata"]["name"] == "j-worker-0")
    assert _container(worker)["securityContext"] == {"privileged": True, "seccompProfile": {"type": "RuntimeDefault"},
                                                     "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}
    warnings = [e for e in d.events if e.reason == C.R_WEAKER_SECURITY]
    assert [e.type for e in warnings] == ["Warning", "Warning"]
    assert warnings[0].message.startswith("spec.workers.template.securityContext.privileged: true weakens")
    assert not any(e.reason == C.R_WEAKER_SECURITY for e in decide(Observed(job(), [], False, T0), IMAGE).events)


def test_an_owned_field_makes_the_job_invalid_with_the_field_named() -> None:
    body = job()
    body["spec"]["workers"]["template"] = {"restartPolicy": "Always"}
    d = decide(Observed(body, [], False, T0), IMAGE)
    assert d.create_pods == [] and d.status_patch is not None
    invalid = next(c for c in d.status_patch["conditions"] if c["type"] == C.COND_INVALID)
    assert invalid["message"].startswith("spec.workers.template.restartPolicy: Garfield owns the pod restart policy")


def test_a_pod_the_apiserver_refused_shows_in_the_degraded_condition() -> None:
    """The controller posts FailedCreate when a create is refused and hands the refusal to the next
    pass, whose Degraded condition names the pod (and the pod is asked for again)."""
    body = job()
    refused = 'pods "j-worker-0" is forbidden: no PriorityClass with name nope was found'
    d = decide(Observed(body, [], False, T0, create_failures={"j-worker-0": refused, "gone-0": "x"}), IMAGE)
    assert "j-worker-0" in {p["metadata"]["name"] for p in d.create_pods}
    assert d.status_patch is not None
    degraded = next(c for c in d.status_patch["conditions"] if c["type"] == C.COND_DEGRADED)
    assert degraded["status"] == "True" and degraded["reason"] == C.R_FAILED_CREATE
    assert degraded["message"] == f"j-worker-0: the apiserver refused to create it: {refused}"
    assert not any(e.reason == C.R_FAILED_CREATE for e in d.events)  # the controller posted it already
