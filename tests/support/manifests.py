"""Builders of ByzantineTrainingJob manifests for tests: a valid job by default, every field overridable.

`job()` is an MNIST MLP job with one server (f=0, median) and five workers (f=1, median), 100 steps.
A keyword set to None leaves its field out, so a test names only what it is about:

    job(workers=4, gar="krum")                                   # too few workers for krum
    job(servers=None)                                            # decentralized: no servers block
    job(servers=4, server_f=1, attack=attack(servers=(1, "random")))
    job(run_policy={"backoffLimit": 0})
"""

from __future__ import annotations

from typing import Any

API_VERSION = "garfield.dev/v1alpha1"
KIND = "ByzantineTrainingJob"
MNIST_MLP = "garfield.tasks.mnist:mlp"
DEFAULT_TRAINING: dict[str, Any] = {"steps": 100}


def role(replicas: int, byzantine: int | None = None, gar: str | None = None, **extra: Any) -> dict[str, Any]:
    """A servers or workers block; `byzantine` and `gar` are left out when None."""
    block: dict[str, Any] = {"replicas": replicas}
    if byzantine is not None:
        block["byzantine"] = byzantine
    if gar is not None:
        block["gar"] = {"name": gar}
    block.update(extra)
    return block


def attack(workers: tuple[int, str] | None = None, servers: tuple[int, str] | None = None) -> dict[str, Any]:
    """spec.attack from (count, name) per role: attack(workers=(2, "signflip"))."""
    out: dict[str, Any] = {}
    for key, value in (("workers", workers), ("servers", servers)):
        if value is not None:
            out[key] = {"count": value[0], "name": value[1]}
    return out


def job(name: str = "j", *, workers: int = 5, worker_f: int | None = 1, gar: str | None = "median",
        servers: int | None = 1, server_f: int | None = 0, server_gar: str | None = "median",
        topology: str | None = None, framework: str | None = None, entrypoint: str = MNIST_MLP,
        training: dict[str, Any] | None = DEFAULT_TRAINING, attack: dict[str, Any] | None = None,
        run_policy: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
        **spec: Any) -> dict[str, Any]:
    """A ByzantineTrainingJob; `servers=None` leaves the servers block out (decentralized, or a test of
    a missing field), `metadata` adds to {"name": name}, and other keywords become spec fields as given."""
    body: dict[str, Any] = {}
    if framework is not None:
        body["framework"] = framework
    body["task"] = {"entrypoint": entrypoint}
    if topology is not None:
        body["topology"] = topology
    if servers is not None:
        body["servers"] = role(servers, server_f, server_gar)
    body["workers"] = role(workers, worker_f, gar)
    if training is not None:
        body["training"] = dict(training)
    if attack is not None:
        body["attack"] = attack
    if run_policy is not None:
        body["runPolicy"] = run_policy
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, **(metadata or {})}, "spec": body}


def full_template(claim: str = "data", secret: str = "creds", config: str = "settings",
                  service_account: str = "trainer", priority_class: str = "garfield-test",
                  pull_secret: str = "registry") -> dict[str, Any]:
    """A role template using every pod-template field: a PVC for data and output, envFrom of a
    Secret and a ConfigMap, a ServiceAccount, an image pull Secret, anti-affinity, a PriorityClass,
    another scheduler, labels, annotations, both security contexts (nothing weakened) and a pull
    policy (tests/spec/test_pod_template_validation.py, tests/operator/test_pod_template_*.py)."""
    return {
        "resources": {"requests": {"cpu": "100m"}},
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": claim}},
            {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
        "volumeMounts": [
            {"name": "data", "mountPath": "/data", "subPath": "mnist", "readOnly": True},
            {"name": "data", "mountPath": "/output", "subPath": "models"},
            {"name": "scratch", "mountPath": "/tmp"},
        ],
        "envFrom": [{"secretRef": {"name": secret}}, {"configMapRef": {"name": config, "optional": True}, "prefix": "APP_"}],
        "serviceAccountName": service_account,
        "imagePullSecrets": [{"name": pull_secret}],
        "imagePullPolicy": "IfNotPresent",
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"team": "ml"}}}}]}},
        "priorityClassName": priority_class,
        "schedulerName": "volcano",
        "labels": {"team": "ml", "example.com/cost-center": "research"},
        "annotations": {"example.com/owner": "alice", "sidecar.istio.io/inject": "false"},
        "podSecurityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 2000, "supplementalGroups": [3000]},
        "securityContext": {"readOnlyRootFilesystem": True, "runAsNonRoot": True, "capabilities": {"drop": ["NET_RAW"]}},
    }
