"""Plan -> Kubernetes manifests (pure).

Each :class:`garfield.plan.Replica` becomes one pod whose name, hostname and subdomain give it the
stable DNS name the plan's peers already point at (``<pod>.<job>.<namespace>.svc``), and the job
gets one headless service publishing not-ready addresses, so peers resolve each other while they
start, and (with --network-policy) its own NetworkPolicy. Pods use ``restartPolicy: Never``: a
restart must be visible to the operator, which counts it against the job's f and backoffLimit and
recreates the pod under the same name.

Under mutual TLS (``spec.security.mutualTLS``, on by default) the job also has a CA Secret and each
replica its own TLS Secret, which only that replica's pod mounts: a Byzantine replica holds its own
key and no other, so it cannot pass for another replica. The key pairs themselves are made where
the decision is applied (``garfield_operator.credentials``: keys are random); here they are only
put into manifests.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from garfield.plan import Plan, Replica
from garfield.plan.replicas import TLS_MOUNT_PATH
from garfield.security.certificates import KeyPair
from garfield.security.files import CA_FILE, CERT_FILE, KEY_FILE
from garfield.spec.contract import REPLICA_CONTRACT
from garfield.spec.podtemplate import container_security_context

from garfield_operator import constants as C

Manifest = dict[str, Any]

CA_KEY_FILE = "ca.key"  # the CA Secret's key besides ca.crt (garfield.security.files names the rest)


def owner_reference(job: Manifest) -> Manifest:
    """The controller reference that lets garbage collection delete children with their job."""
    meta = job["metadata"]
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def job_labels(job_name: str) -> dict[str, str]:
    return {C.LABEL_JOB: job_name, C.LABEL_MANAGED_BY: C.MANAGER}


def _resources(resources: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Copy the template's resources; extended resources (GPUs) must have requests == limits.

    Kubernetes rejects a pod that requests `nvidia.com/gpu` without the same limit (and defaults
    the request from the limit), so the user may write either and the pod gets both.
    """
    out = {k: {rk: str(rv) for rk, rv in v.items()} for k, v in resources.items() if v}
    requests, limits = out.get("requests", {}), out.get("limits", {})
    for name in set(requests) | set(limits):
        if "/" in name and not name.startswith("kubernetes.io/"):
            value = limits[name] if name in limits else requests[name]
            out.setdefault("requests", {})[name] = value
            out.setdefault("limits", {})[name] = value
    return out


def spec_hash(plan: Plan, image: str) -> str:
    """A short digest of what the pods run; pods record it so a spec change is visible."""
    payload = json.dumps([image, [r.to_dict() for r in plan.replicas]], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def ca_secret_name(job_name: str) -> str:
    """The job's CA (certificate and key): read only by the operator, mounted by no pod."""
    return f"{job_name}-ca"


def tls_secret_name(pod_name: str) -> str:
    """One replica's key, certificate and job CA certificate: mounted by that replica's pod only."""
    return f"{pod_name}-tls"


def render_ca_secret(job: Manifest, ca: KeyPair) -> Manifest:
    """The job's CA as a Secret owned by the job (garbage-collected with it). The operator reads it
    back to sign each later certificate, so a restarted operator keeps signing with the same CA."""
    meta = job["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": ca_secret_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": job_labels(meta["name"]),
            "ownerReferences": [owner_reference(job)],
        },
        "data": {CA_FILE: _b64(ca.certificate), CA_KEY_FILE: _b64(ca.key)},
    }


def render_tls_secret(job: Manifest, replica: Replica, ca_certificate: bytes, own: KeyPair) -> Manifest:
    """A replica's own kubernetes.io/tls Secret: its key and certificate, and the CA certificate
    (never the CA key) it checks its peers against."""
    meta = job["metadata"]
    labels = job_labels(meta["name"]) | {C.LABEL_ROLE: replica.role, C.LABEL_INDEX: str(replica.index)}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": tls_secret_name(replica.name),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(job)],
        },
        "data": {CERT_FILE: _b64(own.certificate), KEY_FILE: _b64(own.key), CA_FILE: _b64(ca_certificate)},
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _mount_tls(replica: Replica, pod_spec: Manifest, container: Manifest) -> None:
    """Mount the replica's own Secret, read-only, where the plan's GARFIELD_TLS_DIR points. The
    files are listed (a Secret missing one keeps the pod from starting, with a clear event) and
    mode 0440 under the pod's fsGroup: readable by the node's process, by nobody else."""
    pod_spec["volumes"] = [{
        "name": C.TLS_VOLUME,
        "secret": {
            "secretName": tls_secret_name(replica.name),
            "defaultMode": C.TLS_FILE_MODE,
            "items": [{"key": key, "path": key} for key in (CA_FILE, CERT_FILE, KEY_FILE)],
        },
    }]
    container["volumeMounts"] = [{"name": C.TLS_VOLUME, "mountPath": TLS_MOUNT_PATH, "readOnly": True}]


def _apply_template(replica: Replica, pod_spec: Manifest, container: Manifest) -> None:
    """The role template's pod fields (validated: none collides with what Garfield sets)."""
    pod = replica.pod
    if pod.image_pull_policy:
        container["imagePullPolicy"] = pod.image_pull_policy
    if pod.env_from:
        container["envFrom"] = copy.deepcopy(pod.env_from)
        # env wins over envFrom: listing every contract variable (empty = unset, as garfield node
        # reads it) keeps a ConfigMap's GARFIELD_ATTACK from making a correct replica Byzantine.
        container["env"] += [{"name": name, "value": ""} for name in sorted(REPLICA_CONTRACT - set(replica.env))]
    if pod.volumes:
        pod_spec["volumes"] = pod_spec.get("volumes", []) + copy.deepcopy(pod.volumes)
    if pod.volume_mounts:
        container["volumeMounts"] = container.get("volumeMounts", []) + copy.deepcopy(pod.volume_mounts)
    for key, value in (("serviceAccountName", pod.service_account_name), ("priorityClassName", pod.priority_class_name),
                       ("schedulerName", pod.scheduler_name)):
        if value:
            pod_spec[key] = value
    if pod.image_pull_secrets:
        pod_spec["imagePullSecrets"] = copy.deepcopy(pod.image_pull_secrets)
    if pod.affinity:
        pod_spec["affinity"] = copy.deepcopy(pod.affinity)
    # The pod's context: fsGroup 10001 where the replica mounts its key (so its process reads it),
    # the user's on top (another fsGroup is added to the process's groups just the same).
    pod_context = ({"fsGroup": C.TLS_FS_GROUP} if replica.identity is not None else {}) | copy.deepcopy(
        pod.pod_security_context)
    if pod_context:
        pod_spec["securityContext"] = pod_context


def render_pod(job: Manifest, plan: Plan, replica: Replica, image: str, *, replacement: bool = False,
               digest: str = "") -> Manifest:
    meta = job["metadata"]
    labels = dict(replica.pod.labels) | job_labels(meta["name"]) | {C.LABEL_ROLE: replica.role,
                                                                     C.LABEL_INDEX: str(replica.index)}
    if replica.byzantine:
        labels[C.LABEL_BYZANTINE] = "true"
    annotations = {C.ANNOTATION_SPEC_HASH: digest} if digest else {}
    if replacement:
        annotations[C.ANNOTATION_REPLACEMENT] = "true"
    container: Manifest = {
        "name": C.CONTAINER_NAME,
        "image": image,
        "command": list(replica.command),
        "env": [{"name": k, "value": v} for k, v in replica.env.items()],
        "ports": [
            {"name": C.PORT_GRPC_NAME, "containerPort": replica.ports["grpc"], "protocol": "TCP"},
            {"name": C.PORT_METRICS_NAME, "containerPort": replica.ports["metrics"], "protocol": "TCP"},
        ],
        # A training node needs no privilege: whatever user the image runs as (the project's image
        # runs as 10001; images built FROM it may change that), it cannot gain capabilities. The
        # template's securityContext merges on top (weakening needs allowWeakerSecurityContext).
        "securityContext": container_security_context(replica.pod.security_context),
        # Ready = the node serves its status endpoint; peers already reach it through DNS.
        "readinessProbe": {
            "httpGet": {"path": "/status", "port": C.PORT_METRICS_NAME},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
    }
    resources = _resources(replica.resources)
    if resources:
        container["resources"] = resources
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "hostname": replica.name,
        "subdomain": plan.service_name,
        "enableServiceLinks": False,
        "containers": [container],
    }
    if replica.identity is not None:
        _mount_tls(replica, pod_spec, container)
    _apply_template(replica, pod_spec, container)
    if replica.node_selector:
        pod_spec["nodeSelector"] = dict(replica.node_selector)
    if replica.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in replica.tolerations]
    metadata: Manifest = {
        "name": replica.name,
        "namespace": meta["namespace"],
        "labels": labels,
        "ownerReferences": [owner_reference(job)],
    }
    annotations = dict(replica.pod.annotations) | annotations  # Garfield's keys are its own (validated)
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def render_service(job: Manifest, plan: Plan) -> Manifest:
    """The headless service that gives every pod `<pod>.<job>.<namespace>.svc`."""
    meta = job["metadata"]
    ports = plan.replicas[0].ports if plan.replicas else {"grpc": 50051, "metrics": 9090}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": plan.service_name,
            "namespace": meta["namespace"],
            "labels": job_labels(meta["name"]),
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {C.LABEL_JOB: meta["name"]},
            "ports": [
                {"name": C.PORT_GRPC_NAME, "port": ports["grpc"], "targetPort": ports["grpc"], "protocol": "TCP"},
                {"name": C.PORT_METRICS_NAME, "port": ports["metrics"], "targetPort": ports["metrics"], "protocol": "TCP"},
            ],
        },
    }


@dataclass(frozen=True)
class NetworkPolicyOptions:
    """Who may reach a job's pods besides the job itself: the operator's pods (by their labels, in
    any namespace: Kubernetes 1.20 namespaces carry no name label to select on) and the peers
    allowed to scrape the metrics port (NetworkPolicyPeer objects, e.g. Prometheus' namespace)."""

    operator_pod_labels: dict[str, str] = field(default_factory=dict)
    metrics_from: list[Manifest] = field(default_factory=list)


def render_network_policy(job: Manifest, plan: Plan, options: NetworkPolicyOptions) -> Manifest:
    """The job's own NetworkPolicy: its pods accept training traffic (gRPC) only from the same
    job's pods, and their status/metrics port only from the operator and `metrics_from`. Policies
    only ever add what they allow, so this isolates jobs only where no broader policy lets every
    job pod in (the chart's namespace-wide policy allows no gRPC ingress for that reason)."""
    meta = job["metadata"]
    ports = plan.replicas[0].ports if plan.replicas else {"grpc": 50051, "metrics": 9090}
    same_job = {"podSelector": {"matchLabels": {C.LABEL_JOB: meta["name"]}}}
    status_readers: list[Manifest] = []
    if options.operator_pod_labels:
        status_readers.append({"namespaceSelector": {}, "podSelector": {"matchLabels": dict(options.operator_pod_labels)}})
    status_readers += [dict(peer) for peer in options.metrics_from]
    ingress: list[Manifest] = [{"from": [same_job], "ports": [{"protocol": "TCP", "port": ports["grpc"]}]}]
    if status_readers:
        ingress.append({"from": status_readers, "ports": [{"protocol": "TCP", "port": ports["metrics"]}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": job_labels(meta["name"]),
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {
            "podSelector": {"matchLabels": {C.LABEL_JOB: meta["name"]}},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
