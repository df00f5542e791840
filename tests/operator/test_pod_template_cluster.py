"""The fuller pod template against the real kube-apiserver (v1.20, with its default admission
plugins but ServiceAccount's): a job using every new template field gets pods the apiserver
accepts, carrying each field; a pod the apiserver refuses (a PriorityClass that does not exist yet)
shows as a FailedCreate event and in the Degraded condition and is no failed replica (once the class
exists the job goes on); a job that sets a field Garfield owns is kept by the apiserver (the schema declares those fields, so they
are not pruned) and refused by the operator with a message naming the field; a weaker security
context that the template asked for is rendered and reported."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from garfield.spec.contract import TLS_MOUNT_PATH, TLS_VOLUME

from support.cluster import ControlPlane
from support.kubelet import FakeKubelet, wait_for
from support.manifests import full_template
from support.operator_harness import Jobs, OperatorProcess, job_manifest

pytestmark = pytest.mark.cluster


@pytest.fixture
def priority_class(control_plane: ControlPlane) -> Iterator[str]:
    """A PriorityClass name of this test's own (cluster-scoped: deleted afterwards); not created."""
    name = f"gop-ptpl-{uuid.uuid4().hex[:6]}"
    yield name
    if _priority_class_exists(control_plane, name):
        client.SchedulingV1Api(control_plane.api_client()).delete_priority_class(name)


def _priority_class_exists(plane: ControlPlane, name: str) -> bool:
    try:
        client.SchedulingV1Api(plane.api_client()).read_priority_class(name)
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise


def _create_priority_class(plane: ControlPlane, name: str) -> None:
    client.SchedulingV1Api(plane.api_client()).create_priority_class(
        {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": 1000})


def _objects_the_template_refers_to(jobs: Jobs, ns: str) -> None:
    """The ServiceAccount, claim, Secrets and ConfigMap full_template() names (the claim stays
    Pending: no provisioner; the pod is accepted all the same)."""
    core = jobs.core
    core.create_namespaced_service_account(ns, {"metadata": {"name": "trainer"}})
    core.create_namespaced_persistent_volume_claim(ns, {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "creds"}, "stringData": {"API_TOKEN": "t"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"}, "data": {"LEVEL": "debug"}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "registry"}, "type": "kubernetes.io/dockerconfigjson",
                                       "stringData": {".dockerconfigjson": '{"auths": {}}'}})


def _pods(jobs: Jobs, ns: str, count: int, timeout: float = 30) -> dict[str, Any]:
    return wait_for(lambda: (p := jobs.pods(ns)) and len(p) == count and p, timeout=timeout,
                    what=f"{count} pods in {ns} (jobs: {jobs.statuses(ns)})")


def _raw_pod(plane: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    """The pod as the apiserver stores it, as JSON (camelCase, exactly what was accepted)."""
    response = client.CoreV1Api(plane.api_client()).read_namespaced_pod(name, ns, _preload_content=False)
    return json.loads(response.data)


def test_every_pod_template_field_reaches_pods_the_apiserver_accepts(
        operator: OperatorProcess, jobs: Jobs, ns: str, control_plane: ControlPlane, priority_class: str) -> None:
    _objects_the_template_refers_to(jobs, ns)
    _create_priority_class(control_plane, priority_class)
    template = full_template(priority_class=priority_class)
    body = job_manifest("ptpl", workers=4, worker_f=1)
    body["spec"]["workers"]["template"] = copy.deepcopy(template)
    body["spec"]["servers"]["template"] = copy.deepcopy(template) | {"labels": {"team": "ml", "tier": "server"}}
    body["spec"]["output"] = {"path": "/output"}
    stored = jobs.create(ns, body)
    assert stored["spec"]["workers"]["template"]["volumes"] == template["volumes"]  # nothing pruned
    names = sorted(_pods(jobs, ns, 5))
    assert names == ["ptpl-server-0"] + [f"ptpl-worker-{i}" for i in range(4)]
    for name in names:
        pod = _raw_pod(control_plane, ns, name)
        spec, meta = pod["spec"], pod["metadata"]
        (container,) = spec["containers"]
        # Garfield's own fields, unchanged.
        assert spec["restartPolicy"] == "Never" and spec["hostname"] == name and spec["subdomain"] == "ptpl"
        assert container["command"] == ["python", "-m", "garfield", "node"]
        assert [p["containerPort"] for p in container["ports"]] == [50051, 9090]
        assert meta["labels"]["garfield.dev/job-name"] == "ptpl" and meta["ownerReferences"][0]["uid"] == stored[
            "metadata"]["uid"]
        assert spec["volumes"][0]["name"] == TLS_VOLUME and spec["volumes"][0]["secret"]["secretName"] == f"{name}-tls"
        assert container["volumeMounts"][0] == {"name": TLS_VOLUME, "mountPath": TLS_MOUNT_PATH, "readOnly": True}
        # Each template field, as the apiserver accepted it.
        assert spec["volumes"][1:] == [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                                       {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}]
        assert container["volumeMounts"][1:] == template["volumeMounts"]
        assert container["envFrom"] == template["envFrom"]
        env = {e["name"]: e.get("value", "") for e in container["env"]}
        assert env["GARFIELD_OUTPUT_DIR"] == "/output" and env["GARFIELD_ATTACK"] == ""  # envFrom cannot set it
        assert spec["serviceAccountName"] == "trainer"
        assert spec["imagePullSecrets"] == [{"name": "registry"}]
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert spec["affinity"] == template["affinity"]
        assert spec["priorityClassName"] == priority_class and spec["priority"] == 1000  # admission resolved it
        assert spec["schedulerName"] == "volcano"
        assert meta["labels"]["team"] == "ml" and meta["annotations"]["example.com/owner"] == "alice"
        assert meta["annotations"]["sidecar.istio.io/inject"] == "false" and "garfield.dev/spec-hash" in meta["annotations"]
        if "server" in name:
            assert meta["labels"]["tier"] == "server" and "example.com/cost-center" not in meta["labels"]
        else:
            assert meta["labels"]["example.com/cost-center"] == "research"
        assert spec["securityContext"] == {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 2000,
                                           "supplementalGroups": [3000]}
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL", "NET_RAW"]},
            "seccompProfile": {"type": "RuntimeDefault"}, "readOnlyRootFilesystem": True, "runAsNonRoot": True}
    explained = control_plane.kubectl("explain", "btj.spec.workers.template.securityContext").stdout
    assert "Container-level securityContext" in explained


def test_a_refused_pod_create_is_reported_and_no_failure(operator: OperatorProcess, jobs: Jobs, ns: str,
                                                         control_plane: ControlPlane, kubelet: FakeKubelet,
                                                         priority_class: str) -> None:
    body = job_manifest("noprio", workers=4, worker_f=1)
    body["spec"]["workers"]["template"] = {"priorityClassName": priority_class}
    jobs.create(ns, body)
    degraded = wait_for(lambda: (c := jobs.condition(ns, "noprio", "Degraded")) and c["status"] == "True" and c,
                        timeout=30, what="Degraded=True")
    assert degraded["reason"] == "FailedCreate"
    assert "noprio-worker-0: the apiserver refused to create it" in degraded["message"]
    assert priority_class in degraded["message"]
    events = wait_for(lambda: jobs.events(ns, "FailedCreate"), timeout=10, what="FailedCreate events")
    assert any("pod noprio-worker-0:" in e.message and priority_class in e.message for e in events)
    assert set(jobs.pods(ns)) == {"noprio-server-0"}  # the server's template names no class
    # The job has started (its server pod exists), yet four refused workers (f=1) are not created
    # yet, not lost: once the class exists a retry creates their first pods, no replacements.
    _create_priority_class(control_plane, priority_class)
    pods = _pods(jobs, ns, 5)
    assert all(not (p.metadata.annotations or {}).get("garfield.dev/replacement") for p in pods.values())
    # The pass that sees the new pods (the one that used to count them as lost) records them and
    # clears Degraded; the job is still Pending.
    healthy = wait_for(lambda: (c := jobs.condition(ns, "noprio", "Degraded")) and c["status"] == "False" and c,
                       timeout=30, what="Degraded=False")
    assert healthy["reason"] == "PodsHealthy"
    status = jobs.status(ns, "noprio")
    assert status["phase"] == "Pending" and not any(c["type"] == "Failed" for c in status["conditions"])
    assert status["createdReplicas"] == sorted(pods)
    for name in pods:
        kubelet.run(ns, name)
    jobs.wait_phase(ns, "noprio", "Running", timeout=30)


def test_a_job_overriding_an_operator_owned_field_is_refused_naming_it(operator: OperatorProcess, jobs: Jobs,
                                                                       ns: str) -> None:
    body = job_manifest("owned", workers=4, worker_f=1)
    body["spec"]["workers"]["template"] = {"command": ["sh", "-c", "id"], "restartPolicy": "Always"}
    stored = jobs.create(ns, body)
    assert stored["spec"]["workers"]["template"]["command"] == ["sh", "-c", "id"]  # kept, not pruned
    status = jobs.wait_phase(ns, "owned", "Failed", timeout=30)
    invalid = next(c for c in status["conditions"] if c["type"] == "Invalid")
    assert invalid["status"] == "True" and invalid["reason"] == "InvalidSpec"
    assert "spec.workers.template.command: Garfield owns the container command" in invalid["message"]
    assert "spec.workers.template.restartPolicy: Garfield owns the pod restart policy" in invalid["message"]
    events = wait_for(lambda: jobs.events(ns, "InvalidSpec"), timeout=10, what="the InvalidSpec event")
    assert "spec.workers.template.command" in events[0].message
    assert jobs.pods(ns) == {}


def test_a_weaker_security_context_asked_for_is_created_and_reported(operator: OperatorProcess, jobs: Jobs,
                                                                     ns: str, control_plane: ControlPlane) -> None:
    body = job_manifest("weak", workers=4, worker_f=1)
    body["spec"]["workers"]["template"] = {"securityContext": {"privileged": True}, "allowWeakerSecurityContext": True}
    jobs.create(ns, body)
    _pods(jobs, ns, 5)
    container = _raw_pod(control_plane, ns, "weak-worker-0")["spec"]["containers"][0]
    assert container["securityContext"]["privileged"] is True and "allowPrivilegeEscalation" not in container[
        "securityContext"]
    server = _raw_pod(control_plane, ns, "weak-server-0")["spec"]["containers"][0]
    assert server["securityContext"]["allowPrivilegeEscalation"] is False
    events = wait_for(lambda: jobs.events(ns, "WeakerSecurityContext"), timeout=10, what="the warning event")
    assert events[0].type == "Warning" and "securityContext.privileged: true weakens" in events[0].message
