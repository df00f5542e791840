"""The operator works as a ServiceAccount holding only garfield_operator.rbac.RULES (no admin), mutual TLS
included: it makes and reads back each job's CA and rotates a replica's key on recreation, by name,
without being able to list Secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from garfield_operator.rbac import NETWORK_POLICY_RULES, RULES

from support.cluster import ControlPlane
from support.kubelet import FakeKubelet, wait_for
from support.operator_harness import NETWORK_POLICY_ARGS, Jobs, OperatorProcess, StatusServer, job_manifest

pytestmark = pytest.mark.cluster

NS = "gsa-rbac"


def test_least_privilege_role_is_enough(crd: ControlPlane, jobs: Jobs, kubelet: FakeKubelet,
                                        status_server: StatusServer, tmp_path: Path) -> None:
    kubeconfig = crd.service_account_kubeconfig(NS, "garfield-operator")
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "garfield-operator", "namespace": NS}, "rules": RULES + NETWORK_POLICY_RULES}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "garfield-operator", "namespace": NS},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "garfield-operator"},
               "subjects": [{"kind": "ServiceAccount", "name": "garfield-operator", "namespace": NS}]}
    crd.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))
    # Without the binding's rules it could not even read pods cluster-wide:
    denied = crd.kubectl("--kubeconfig", kubeconfig, "get", "pods", "-A", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    # Secrets only by name (the jobs' CAs and replica keys): it can never list what is there.
    denied = crd.kubectl("--kubeconfig", kubeconfig, "get", "secrets", "-n", NS, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()

    op = OperatorProcess(crd, NS, status_server.port, tmp_path / "op.log", kubeconfig=kubeconfig,
                         extra_args=NETWORK_POLICY_ARGS).start()
    try:
        jobs.create(NS, job_manifest("rbac", workers=4, worker_f=1, run_policy={"ttlSecondsAfterFinished": 0}))
        pods = wait_for(lambda: (p := jobs.pods(NS)) and len(p) == 5 and p, what="5 pods")
        for name in pods:
            kubelet.run(NS, name)
        jobs.wait_phase(NS, "rbac", "Running")
        networking = client.NetworkingV1Api(jobs.core.api_client)
        wait_for(lambda: networking.list_namespaced_network_policy(NS).items, what="the job's NetworkPolicy")
        uid = pods["rbac-worker-1"].metadata.uid
        key = jobs.core.read_namespaced_secret("rbac-worker-1-tls", NS).data["tls.key"]
        kubelet.exit(NS, "rbac-worker-1", 1)
        wait_for(lambda: (p := jobs.pods(NS).get("rbac-worker-1")) is not None and p.metadata.uid != uid,
                 what="pod recreated (delete + create)")
        # ... with a fresh key in its Secret (replaced: the update verb), signed by the CA read back (get).
        assert jobs.core.read_namespaced_secret("rbac-worker-1-tls", NS).data["tls.key"] != key
        wait_for(lambda: jobs.events(NS, "PodFailed") and jobs.events(NS, "PodsCreated"), what="events posted")
        kubelet.exit(NS, "rbac-server-0", 0)
        wait_for(lambda: jobs.get(NS, "rbac") is None, what="TTL deleted the job")
    finally:
        op.stop()
    denials = permission_denials((tmp_path / "op.log").read_text())
    assert denials == [], denials


def permission_denials(log: str) -> list[str]:
    """The operator log's lines that report an authorization failure.

    The operator logs JSON: a failed API call carries a structured ``http_status``; kopf's own
    errors (APIForbiddenError) and the apiserver's replies say "forbidden" as a word. Matching
    digits anywhere would hit timestamps (``19:01:57.128403``) and UIDs.
    """
    found = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            if entry.get("http_status") in (401, 403):
                found.append(line)
                continue
            text = " ".join(str(v) for k, v in entry.items() if k not in ("timestamp", "uid"))
        else:
            text = line
        if FORBIDDEN.search(text):
            found.append(line)
    return found


FORBIDDEN = re.compile(r"\b(forbidden|unauthorized)\b|APIForbiddenError", re.IGNORECASE)


@pytest.mark.parametrize(("line", "denied"), [
    ('{"message": "reconcile of gsa-rbac/rbac failed, retrying in 0.1s: (403) pods is forbidden", '
     '"http_status": 403, "timestamp": "2026-12-02T19:01:57.128417+00:00"}', True),
    ('{"message": "Watching failed: APIForbiddenError", "timestamp": "2026-12-02T19:01:57.128417+00:00"}', True),
    ('{"message": "pods created", "job": "gsa-rbac/rbac", "timestamp": "2026-12-02T19:58:11.931403+00:00"}', False),
    ('{"message": "reconcile of a/b failed: (409) conflict", "http_status": 409, '
     '"timestamp": "2026-12-02T19:58:11.403000+00:00"}', False),
    ("[2026-12-02 19:58:11,403] kopf.objects [WARNING] Forbidden: cannot list pods", True),
])
def test_permission_denials_match_fields_not_digits(line: str, denied: bool) -> None:
    assert (permission_denials(line) == [line]) is denied
