"""Mutual TLS in the operator's pure half: what the decision asks for (the job's CA once, a fresh
certificate for each pod it creates), how pods mount their own Secret, what the Secrets hold, and
the credentials' classification of a CA Secret. The cluster tests (test_tls_cluster.py) show the
same live; nothing here makes a key except the Secret rendering test."""

from __future__ import annotations

import base64
import datetime as dt

from garfield.plan.replicas import TLS_MOUNT_PATH
from garfield.security.certificates import issue, new_ca, uri_of
from garfield.spec.model import mutual_tls_of

from garfield_operator import constants as C
from garfield_operator import rendering
from garfield_operator.credentials import classify, key_pair
from garfield_operator.reconcile import CaSecret, Observed, decide

from support.decisions import IMAGE, T0, apply, job, pod, running, running_job


def test_fresh_job_makes_its_ca_once_and_a_certificate_for_every_pod() -> None:
    body = job()
    d = decide(Observed(body, [], False, T0, ca_secret=CaSecret.MISSING), IMAGE)
    assert d.create_ca
    assert [r.name for r in d.issue_certificates] == [p["metadata"]["name"] for p in d.create_pods]
    assert [r.identity.uri for r in d.issue_certificates][:2] == ["garfield://ns/j/server/0", "garfield://ns/j/worker/0"]
    assert d.issue_certificates[1].dns_names == ("j-worker-0", "j-worker-0.j.ns.svc")
    # The CA exists now (the controller made it before the first certificate): nothing more to do.
    stored = apply(body, d)
    pods = [pod(m) for m in d.create_pods]
    d2 = decide(Observed(stored, pods, True, T0 + dt.timedelta(seconds=1), ca_secret=CaSecret.OURS), IMAGE)
    assert not d2.create_ca and d2.issue_certificates == [] and d2.create_pods == []


def test_a_missing_ca_is_made_only_when_a_certificate_needs_it() -> None:
    stored, created = running_job()
    d = decide(Observed(stored, running(stored, created), True, T0, ca_secret=CaSecret.MISSING), IMAGE)
    assert not d.create_ca and d.create_pods == []


def test_a_recreated_pod_gets_a_new_certificate_and_only_it() -> None:
    stored, created = running_job()
    pods = running(stored, created)
    del pods[2]  # j-worker-1 is gone (deleted, or its failed pod was removed)
    d = decide(Observed(stored, pods, True, T0), IMAGE)
    assert [p["metadata"]["name"] for p in d.create_pods] == ["j-worker-1"]
    assert [r.name for r in d.issue_certificates] == ["j-worker-1"] and not d.create_ca


def test_pod_mounts_only_its_own_secret_read_only_and_not_world_readable() -> None:
    d = decide(Observed(job(), [], False, T0), IMAGE)
    for p in d.create_pods:
        name = p["metadata"]["name"]
        spec = p["spec"]
        (volume,) = spec["volumes"]
        assert volume["secret"]["secretName"] == f"{name}-tls" == rendering.tls_secret_name(name)
        assert volume["secret"]["defaultMode"] == 0o440 and spec["securityContext"] == {"fsGroup": C.TLS_FS_GROUP}
        assert [i["key"] for i in volume["secret"]["items"]] == ["ca.crt", "tls.crt", "tls.key"]
        (container,) = spec["containers"]
        assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": TLS_MOUNT_PATH, "readOnly": True}]
        assert {"name": "GARFIELD_TLS_DIR", "value": TLS_MOUNT_PATH} in container["env"]


def test_without_mutual_tls_no_mount_no_certificate_no_ca() -> None:
    body = job(security={"mutualTLS": False})
    assert not mutual_tls_of(body["spec"]) and mutual_tls_of(job()["spec"]) and mutual_tls_of(job(security={})["spec"])
    d = decide(Observed(body, [], False, T0, ca_secret=CaSecret.MISSING), IMAGE)
    assert len(d.create_pods) == 6 and d.issue_certificates == [] and not d.create_ca
    for p in d.create_pods:
        assert "volumes" not in p["spec"] and "securityContext" not in p["spec"]
        assert "volumeMounts" not in p["spec"]["containers"][0]
        assert "GARFIELD_TLS_DIR" not in {e["name"] for e in p["spec"]["containers"][0]["env"]}


def test_a_foreign_ca_secret_holds_back_every_pod_with_one_warning() -> None:
    body = job()
    d = decide(Observed(body, [], False, T0, ca_secret=CaSecret.FOREIGN), IMAGE)
    assert d.create_pods == [] and d.issue_certificates == [] and not d.create_ca
    assert d.create_service is not None  # the rest of the job's objects are made
    assert [e.reason for e in d.events] == [C.R_FOREIGN_CA_SECRET] and "j-ca" in d.events[0].message
    assert d.requeue_after is not None and d.requeue_after <= 5  # no Secret watch: look again soon
    stored = apply(body, d)
    degraded = next(c for c in stored["status"]["conditions"] if c["type"] == C.COND_DEGRADED)
    assert degraded["status"] == "True" and degraded["reason"] == C.R_FOREIGN_CA_SECRET
    assert not stored["status"].get("startTime") and not stored["status"].get("createdReplicas")
    again = decide(Observed(stored, [], True, T0 + dt.timedelta(seconds=2), ca_secret=CaSecret.FOREIGN), IMAGE)
    assert again.events == [] and again.create_pods == []
    # Gone (garbage-collected): the CA is made and every pod created, as first starts.
    later = decide(Observed(stored, [], True, T0 + dt.timedelta(seconds=4), ca_secret=CaSecret.MISSING), IMAGE)
    assert later.create_ca and len(later.create_pods) == 6
    assert all(C.ANNOTATION_REPLACEMENT not in p["metadata"].get("annotations", {}) for p in later.create_pods)


def test_secrets_hold_the_replica_pair_and_the_ca_certificate_never_the_ca_key() -> None:
    body = job()
    d = decide(Observed(body, [], False, T0, ca_secret=CaSecret.MISSING), IMAGE)
    replica = d.issue_certificates[1]
    ca = new_ca("j", "ns")
    ca_secret = rendering.render_ca_secret(body, ca)
    assert ca_secret["metadata"]["name"] == "j-ca" and ca_secret["type"] == "Opaque"
    assert ca_secret["metadata"]["ownerReferences"] == [rendering.owner_reference(body)]
    assert key_pair(ca_secret) == ca
    own = issue(ca, replica.identity, replica.dns_names)
    secret = rendering.render_tls_secret(body, replica, ca.certificate, own)
    assert secret["type"] == "kubernetes.io/tls" and secret["metadata"]["name"] == "j-worker-0-tls"
    assert secret["metadata"]["ownerReferences"] == [rendering.owner_reference(body)]
    assert secret["metadata"]["labels"][C.LABEL_ROLE] == "worker" and secret["metadata"]["labels"][C.LABEL_INDEX] == "0"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert data == {"tls.crt": own.certificate, "tls.key": own.key, "ca.crt": ca.certificate}
    assert ca.key not in data.values()
    assert uri_of(data["tls.crt"]) == "garfield://ns/j/worker/0"


def test_ca_secret_classification_by_owner() -> None:
    body = job()
    ca_secret = rendering.render_ca_secret(body, new_ca("j", "ns"))
    assert classify(None, body) is CaSecret.MISSING
    assert classify(ca_secret, body) is CaSecret.OURS
    stale = {**ca_secret, "metadata": {**ca_secret["metadata"],
                                       "ownerReferences": [{**rendering.owner_reference(body), "uid": "old-uid"}]}}
    assert classify(stale, body) is CaSecret.FOREIGN
    assert classify({"metadata": {"name": "j-ca"}, "data": {}}, body) is CaSecret.FOREIGN
