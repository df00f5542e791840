"""Mutual TLS, operator side, against the real kube-apiserver: the job's CA Secret, one Secret per
replica mounted by that replica's pod only, certificates that name their replica and verify against
the job's CA, a fresh key whenever a pod is recreated (also by a restarted operator, which keeps the
CA), and nothing of it when `spec.security.mutualTLS` is false."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client

from garfield.plan.replicas import TLS_MOUNT_PATH
from garfield.security.certificates import uri_of
from garfield.security.identity import ReplicaIdentity
from garfield.spec.kinds import Role

from support.kubelet import FakeKubelet, wait_for
from support.operator_harness import Jobs, OperatorProcess, job_manifest

pytestmark = pytest.mark.cluster

REPLICA_KEYS = {"ca.crt", "tls.crt", "tls.key"}


def _owned_by(obj: Any, job: dict[str, Any]) -> bool:
    refs = obj.metadata.owner_references or []
    return any(r.uid == job["metadata"]["uid"] and r.controller and r.kind == "ByzantineTrainingJob" for r in refs)


def _secret(jobs: Jobs, ns: str, name: str) -> Any | None:
    try:
        return jobs.core.read_namespaced_secret(name, ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _data(secret: Any, key: str) -> bytes:
    return base64.b64decode(secret.data[key])


def _job_secrets(jobs: Jobs, ns: str, job: str) -> dict[str, Any]:
    items = jobs.core.list_namespaced_secret(ns, label_selector=f"garfield.dev/job-name={job}").items
    return {s.metadata.name: s for s in items}


def _pods(jobs: Jobs, ns: str, count: int) -> dict[str, Any]:
    return wait_for(lambda: (p := jobs.pods(ns)) and len(p) == count and p, timeout=30, what=f"{count} pods in {ns}")


def _check_replica_certificate(secret: Any, ca: x509.Certificate, ns: str, job: str, pod: str) -> x509.Certificate:
    """The replica's Secret holds its own pair, signed by the job's CA and naming it, and no CA key."""
    assert secret.type == "kubernetes.io/tls" and set(secret.data) == REPLICA_KEYS, pod
    cert = x509.load_pem_x509_certificate(_data(secret, "tls.crt"))
    cert.verify_directly_issued_by(ca)
    assert _data(secret, "ca.crt") == ca.public_bytes(serialization.Encoding.PEM)
    role, index = pod.split("-")[-2:]
    assert uri_of(_data(secret, "tls.crt")) == ReplicaIdentity(ns, job, Role(role), int(index)).uri
    dns = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert dns[0] == pod and f"{pod}.{job}.{ns}.svc" in dns, dns
    key = serialization.load_pem_private_key(_data(secret, "tls.key"), password=None)
    assert key.public_key() == cert.public_key(), f"{pod}: the key is not the certificate's"
    return cert


def test_each_replica_gets_its_own_secret_signed_by_the_job_ca(operator: OperatorProcess, jobs: Jobs, ns: str) -> None:
    job = jobs.create(ns, job_manifest("tls", workers=4, worker_f=1))
    pods = _pods(jobs, ns, 5)
    # Pods are created only after their Secret: by now every one exists.
    ca_secret = _secret(jobs, ns, "tls-ca")
    assert ca_secret is not None and ca_secret.type == "Opaque" and set(ca_secret.data) == {"ca.crt", "ca.key"}
    assert _owned_by(ca_secret, job)
    ca = x509.load_pem_x509_certificate(_data(ca_secret, "ca.crt"))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    secrets = _job_secrets(jobs, ns, "tls")
    assert set(secrets) == {"tls-ca", *(f"{p}-tls" for p in pods)}
    for name, pod in pods.items():
        secret = secrets[f"{name}-tls"]
        assert _owned_by(secret, job), name
        _check_replica_certificate(secret, ca, ns, "tls", name)
        # The pod mounts its own Secret and no other, read-only, where GARFIELD_TLS_DIR points.
        (volume,) = pod.spec.volumes
        assert volume.secret.secret_name == f"{name}-tls"
        assert volume.secret.default_mode == 0o440 and pod.spec.security_context.fs_group == 10001
        assert {i.key for i in volume.secret.items} == REPLICA_KEYS
        (mount,) = pod.spec.containers[0].volume_mounts
        assert (mount.name, mount.mount_path, mount.read_only) == (volume.name, TLS_MOUNT_PATH, True)
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        assert env["GARFIELD_TLS_DIR"] == TLS_MOUNT_PATH


def test_recreated_pod_gets_a_fresh_key_from_the_same_ca_even_after_an_operator_restart(
        operator: OperatorProcess, jobs: Jobs, kubelet: FakeKubelet, ns: str) -> None:
    jobs.create(ns, job_manifest("rot", workers=4, worker_f=1))
    pods = _pods(jobs, ns, 5)
    for name in pods:
        kubelet.run(ns, name)
    ca_before = _secret(jobs, ns, "rot-ca")
    ca = x509.load_pem_x509_certificate(_data(ca_before, "ca.crt"))
    untouched = _secret(jobs, ns, "rot-worker-2-tls").metadata.resource_version
    for round_, restart in enumerate((False, True)):
        victim = f"rot-worker-{round_}"
        before = _secret(jobs, ns, f"{victim}-tls")
        old_uid = pods[victim].metadata.uid
        if restart:
            operator.stop()
        # With no grace period the pod goes at once; the operator sees it gone and recreates it.
        jobs.core.delete_namespaced_pod(victim, ns, grace_period_seconds=0)
        if restart:
            operator.start()
        pods = wait_for(lambda v=victim, u=old_uid: (p := jobs.pods(ns)).get(v) is not None and p[v].metadata.uid != u
                        and len(p) == 5 and p, timeout=30, what=f"{victim} recreated")
        after = _secret(jobs, ns, f"{victim}-tls")
        assert _data(after, "tls.key") != _data(before, "tls.key"), "the recreated pod reuses the old key"
        assert _data(after, "tls.crt") != _data(before, "tls.crt")
        _check_replica_certificate(after, ca, ns, "rot", victim)
        # The CA is the job's, kept (read back, never remade); the other replicas keep their pairs.
        assert _secret(jobs, ns, "rot-ca").data == ca_before.data
        assert _secret(jobs, ns, "rot-worker-2-tls").metadata.resource_version == untouched
        kubelet.run(ns, victim)  # the replacement runs: the job is whole again (f=1) before the next round
        jobs.wait_phase(ns, "rot", "Running")
    assert jobs.status(ns, "rot")["phase"] == "Running"


def test_a_ca_secret_the_job_does_not_own_is_never_used(operator: OperatorProcess, jobs: Jobs, ns: str) -> None:
    """E.g. the CA of a deleted job of the same name, not yet garbage-collected: signing with it would
    issue certificates the job's own CA does not know. No pod starts until it is gone."""
    from garfield.security.certificates import new_ca

    foreign = new_ca("stale", ns)
    jobs.core.create_namespaced_secret(ns, {"metadata": {"name": "stale-ca"}, "type": "Opaque", "data": {
        "ca.crt": base64.b64encode(foreign.certificate).decode(), "ca.key": base64.b64encode(foreign.key).decode()}})
    job = jobs.create(ns, job_manifest("stale", workers=4, worker_f=1))
    wait_for(lambda: [e for e in jobs.events(ns, "ForeignCASecret") if "stale-ca" in e.message], timeout=30,
             what="a ForeignCASecret event naming the foreign CA secret")
    degraded = wait_for(lambda: (c := jobs.condition(ns, "stale", "Degraded")) and c["status"] == "True" and c,
                        timeout=30, what="the Degraded condition")
    assert degraded["reason"] == "ForeignCASecret" and "stale-ca" in degraded["message"]
    assert jobs.pods(ns) == {} and _secret(jobs, ns, "stale-server-0-tls") is None
    assert not jobs.status(ns, "stale").get("startTime"), "no pod was created: the job has not started"
    jobs.core.delete_namespaced_secret("stale-ca", ns)
    pods = _pods(jobs, ns, 5)
    assert all(p.metadata.annotations.get("garfield.dev/replacement") is None for p in pods.values())
    ca_secret = _secret(jobs, ns, "stale-ca")
    assert _owned_by(ca_secret, job) and _data(ca_secret, "ca.crt") != foreign.certificate
    ca = x509.load_pem_x509_certificate(_data(ca_secret, "ca.crt"))
    for name in pods:
        _check_replica_certificate(_secret(jobs, ns, f"{name}-tls"), ca, ns, "stale", name)


def test_without_mutual_tls_no_secret_and_no_mount(operator: OperatorProcess, jobs: Jobs, ns: str) -> None:
    jobs.create(ns, job_manifest("plain", workers=4, worker_f=1, security={"mutualTLS": False}))
    pods = _pods(jobs, ns, 5)
    # Under mutual TLS a pod is created only after its Secret, so none now means none at all.
    assert _job_secrets(jobs, ns, "plain") == {}
    for name, pod in pods.items():
        assert not pod.spec.volumes and not pod.spec.containers[0].volume_mounts, name
        assert "GARFIELD_TLS_DIR" not in {e.name for e in pod.spec.containers[0].env}, name
