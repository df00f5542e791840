"""Run a whole job's nodes inside one asyncio loop (real gRPC on loopback, one process).

Cheaper than one process per replica (torch is imported once) while every message still crosses
a real socket through the real transport. Real-process runs live in test_node_process.py.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from garfield.adapters import create
from garfield.node import protocol_node
from garfield.observability.state import NodeState
from garfield.plan.replicas import NodeConfig, replica_name, simulated_attack
from garfield.protocol.base import ProtocolNode
from garfield.security.certificates import KeyPair, issue, new_ca
from garfield.security.files import TlsMaterial
from garfield.security.identity import ReplicaIdentity
from garfield.spec.kinds import Role, Topology
from garfield.spec.validation import validate_manifest
from garfield.task import load_task

TASK = "tinytask:mlp"


def free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def manifest(servers: int | None, fs: int, workers: int, fw: int, *, steps: int = 60, server_gar: str = "median",
             worker_gar: str = "median", worker_attack: dict | None = None, server_attack: dict | None = None,
             rpc: float = 5.0, startup: float = 30.0, momentum: float = 0.9, eval_interval: int = 0,
             lr: float | None = None, name: str = "t") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "framework": "pytorch",
        "task": {"entrypoint": TASK},
        "workers": {"replicas": workers, "byzantine": fw, "gar": {"name": worker_gar}},
        "training": {"steps": steps, "batchSize": 32, "workerMomentum": momentum, "evaluationInterval": eval_interval,
                     "timeouts": {"rpcSeconds": rpc, "startupSeconds": startup}},
    }
    if lr is not None:
        spec["training"]["learningRate"] = lr
    if servers is None:
        spec["topology"] = "decentralized"
    else:
        spec["servers"] = {"replicas": servers, "byzantine": fs, "gar": {"name": server_gar}}
    attack = {}
    if worker_attack:
        attack["workers"] = worker_attack
    if server_attack:
        attack["servers"] = server_attack
    if attack:
        spec["attack"] = attack
    return {"apiVersion": "garfield.dev/v1alpha1", "kind": "ByzantineTrainingJob", "metadata": {"name": name}, "spec": spec}


@dataclass
class Cluster:
    nodes: list[ProtocolNode]
    servers: list[str]
    workers: list[str]
    results: dict[str, Any] = field(default_factory=dict)
    ca: KeyPair | None = None  # the job's CA when it runs over mutual TLS
    tasks: dict[str, asyncio.Task[int]] = field(default_factory=dict)  # each node's run(), once started

    def material(self, role: str, index: int, ca: KeyPair | None = None) -> TlsMaterial:
        """A fresh key and certificate for replica (role, index) of this job, from `ca` (default: the job's)."""
        ca = ca or self.ca
        assert ca is not None, "the job runs plaintext"
        return tls_material(ca, self.nodes[0].config.job, Role(role), index)

    def by_role(self, role: str) -> list[ProtocolNode]:
        return [n for n in self.nodes if n.config.role == role]


def tls_material(ca: KeyPair, job: str, role: Role, index: int, namespace: str = "default") -> TlsMaterial:
    """What the operator's Secret (or garfield run's folder) gives replica (role, index) of `job`."""
    pair = issue(ca, ReplicaIdentity(namespace, job, role, index), [replica_name(job, role, index)])
    return TlsMaterial(ca=ca.certificate, certificate=pair.certificate, key=pair.key)


def build(doc: dict[str, Any], replace: dict[tuple[str, int], str] | None = None, tls: bool = False,
          output_dir: str | None = None) -> Cluster:
    """Nodes for every replica of `doc`; `replace` maps (role, index) to an address served by
    something else (a raw impostor), for which no node is built. `tls`: mutual TLS, one CA for the
    job and one certificate per replica. `output_dir`: every replica's output folder (models, checkpoints)."""
    job = validate_manifest(doc)
    ca = new_ca(job.name, job.namespace) if tls else None
    spec = job.spec
    decentral = spec.topology is Topology.DECENTRALIZED
    n_servers = 0 if decentral else spec.servers.replicas  # type: ignore[union-attr]
    ports = free_ports(n_servers + spec.workers.replicas)
    servers = [f"127.0.0.1:{p}" for p in ports[:n_servers]]
    workers = [f"127.0.0.1:{p}" for p in ports[n_servers:]]
    replace = replace or {}
    for (role, index), address in replace.items():
        (servers if role == Role.SERVER else workers)[index] = address
    roles = [(Role.PEER, workers)] if decentral else [(Role.SERVER, servers), (Role.WORKER, workers)]
    nodes = []
    for role, addresses in roles:
        count = len(addresses)
        attack_spec = spec.attack_on(role)
        for index in range(count):
            if (role, index) in replace:
                continue
            bad = simulated_attack(index, count, attack_spec)
            torch.manual_seed(spec.training.seed)
            task = load_task(spec.task.entrypoint, spec.task.args)
            adapter = create("pytorch", task, spec, role, index)
            state = NodeState(job.name, role, index, spec.training.steps, byzantine=bad is not None)
            material = tls_material(ca, job.name, role, index) if ca is not None else None
            config = NodeConfig(job=job.name, role=role, index=index, spec=spec, listen=addresses[index],
                                servers=servers, workers=workers, attack=bad, tls=material, output_dir=output_dir,
                                identity=ReplicaIdentity(job.namespace, job.name, role, index) if ca else None)
            nodes.append(protocol_node(config, adapter, state))
    return Cluster(nodes, servers, workers, ca=ca)


async def run(cluster: Cluster, timeout: float = 120.0,
              during: Callable[[Cluster], Any] | None = None) -> dict[str, int]:
    """Start every node, run them to the end (optionally running `during(cluster)` alongside);
    returns each node's exit code (None when it was cancelled)."""
    ordered = list(cluster.nodes)
    for node in ordered:
        await node.start()
    tasks = cluster.tasks = {node.name: asyncio.create_task(node.run()) for node in ordered}
    extra = asyncio.create_task(during(cluster)) if during else None
    done, pending = await asyncio.wait(tasks.values(), timeout=timeout)
    for task in pending:
        task.cancel()
    if extra:
        extra.cancel()
        await asyncio.gather(extra, return_exceptions=True)
    await asyncio.gather(*pending, return_exceptions=True)
    codes = {}
    for name, task in tasks.items():
        codes[name] = task.result() if task.done() and not task.cancelled() and task.exception() is None else None
    if pending:
        raise TimeoutError(f"nodes still running after {timeout} s: {sorted(n for n, t in tasks.items() if t in pending)}")
    return codes


def assert_attack_reached_every_quorum(cluster: Cluster) -> None:
    """The precondition of every resilience claim: each correct node's quorums that could hold a
    simulated attacker did (its reply aggregated, or refused), and there were such quorums.
    Attacks that withhold replies are not scheduled first, so they have none."""
    correct = [n for n in cluster.nodes if not n.state.byzantine]
    counts = [c for n in correct for c in n.state.quorum_counts().values()]
    attackable = sum(c["attackable"] for c in counts)
    if not any(n.attackers for n in correct):
        assert attackable == 0, counts
        return
    assert attackable > 0, counts
    missed = {n.name: q for n in correct for q in [n.state.quorum_counts()]
              if any(c["attacked"] != c["attackable"] for c in q.values())}
    assert not missed, f"quorums without the attacker: {missed}"


def accuracy(node: ProtocolNode) -> float:
    return node.adapter.evaluate()["accuracy"]
