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
