"""Job -> replicas: the pure function both launchers share.

The operator renders each Replica as a pod and the local launcher runs it as a process, so a job
behaves the same on a cluster and on a laptop. Nothing here touches the network, the clock or the
file system: the same job and addressing always give the same plan (a unit test pins one).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from garfield.plan.addressing import Addressing
from garfield.security.files import TlsMaterial
from garfield.security.identity import ReplicaIdentity
from garfield.spec import contract
from garfield.spec.kinds import Role, Topology
from garfield.spec.model import AttackSpec, JobSpec, PodOptions, gpu_count
from garfield.spec.validation import Job

SERVER, WORKER, PEER = Role.SERVER, Role.WORKER, Role.PEER

# The runtime's entry point. The local launcher swaps "python" for its own interpreter.
NODE_COMMAND: tuple[str, ...] = ("python", "-m", "garfield", "node")

# The environment contract between the plan and `garfield node`: garfield.spec.contract (ENV_*).

# Where a pod finds its own TLS key, certificate and job CA (its Secret, mounted read-only); the
# local launcher points each process at its own folder of the run instead.
TLS_MOUNT_PATH = contract.TLS_MOUNT_PATH


@dataclass(frozen=True)
class SimulatedAttack:
    """The attack one replica simulates: a catalog name and its parameters. The plan puts it in the
    replica's environment (`GARFIELD_ATTACK`, JSON) and the node reads it back; the attack's
    constructor checks name and parameters against the catalog, as validation did."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}

    def to_env(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_env(cls, text: str) -> SimulatedAttack:
        """Parse `GARFIELD_ATTACK`; ValueError saying what is wrong with it."""
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(value, dict) or not isinstance(value.get("name"), str) \
                or not isinstance(value.get("params") or {}, dict) or set(value) - {"name", "params"}:
            raise ValueError('must be {"name": "<attack>", "params": {...}}')
        return cls(value["name"], dict(value.get("params") or {}))


@dataclass(frozen=True)
class NodeConfig:
    """What one replica is told, as `garfield.node.read_env` reads it back from the variables above.

    One type for the whole node stack: the node builds it, the protocol nodes run on it. It lives
    here, with the contract it mirrors, because the node sits above the protocol layer and both
    need it, and because `garfield.node` must stay free of gRPC until its fork (the fork server
    preloads it), which rules out the protocol package."""

    job: str
    role: Role
    index: int
    spec: JobSpec
    listen: str  # host:port its gRPC server binds
    servers: list[str]  # every server's address, in index order
    workers: list[str]  # every worker's (or, decentralized, peer's) address, in index order
    metrics_port: int | None = None  # None: no /metrics and /status server
    attack: SimulatedAttack | None = None  # the attack this replica simulates, if any
    output_dir: str | None = None  # where a correct server (peer) writes its final model; None: nowhere
    # Mutual TLS: the replica's own key, certificate and job CA (None: plaintext), and who its
    # certificate says it is (checked against job, role and index when the node reads it).
    tls: TlsMaterial | None = None
    identity: ReplicaIdentity | None = None

    @property
    def name(self) -> str:
        """The node's name among its peers, e.g. "worker-3" (what replies are signed with)."""
        return f"{self.role}-{self.index}"


@dataclass(frozen=True)
class Replica:
    """One process (or pod) of a job."""

    role: Role
    index: int
    name: str
    command: list[str]
    env: dict[str, str]
    ports: dict[str, int]
    resources: dict[str, dict[str, Any]]
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    # The rest of the role's template (volumes, identity, scheduling, metadata, security context):
    # the operator renders it, the local launcher ignores it.
    pod: PodOptions = field(default_factory=PodOptions)
    address: str = ""
    attack: SimulatedAttack | None = None
    # Who the replica is to its peers under mutual TLS (None: the job runs plaintext), and the
    # names its certificate lists (its stable name first: what peers check when they dial it).
    identity: ReplicaIdentity | None = None
    dns_names: tuple[str, ...] = ()

    @property
    def byzantine(self) -> bool:
        return self.attack is not None

    @property
    def gpus(self) -> int:
        return gpu_count(self.resources)

    def to_dict(self) -> dict[str, Any]:
        pod = self.pod.to_dict()
        return {
            **({"pod": pod} if pod else {}),  # only when set: a job without them keeps its spec hash
            "name": self.name,
            "role": str(self.role),
            "index": self.index,
            "address": self.address,
            "byzantine": self.attack.to_dict() if self.attack is not None else None,
            "command": self.command,
            "ports": self.ports,
            "resources": self.resources,
            "nodeSelector": self.node_selector,
            "tolerations": self.tolerations,
            "env": self.env,
            "identity": self.identity.uri if self.identity is not None else None,
            "dnsNames": list(self.dns_names),
        }


@dataclass(frozen=True)
class Plan:
    job_name: str
    namespace: str
    topology: Topology
    service_name: str
    replicas: list[Replica]

    def by_role(self, role: Role) -> list[Replica]:
        return [r for r in self.replicas if r.role == role]

    @property
    def primary_role(self) -> Role:
        """The role whose correct replicas hold the model and decide success."""
        return self.topology.primary_role

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job_name,
            "namespace": self.namespace,
            "topology": str(self.topology),
            "service": self.service_name,
            "replicas": [r.to_dict() for r in self.replicas],
        }


def replica_name(job_name: str, role: str, index: int) -> str:
    return f"{job_name}-{role}-{index}"


def dns_names(name: str, address: str) -> tuple[str, ...]:
    """The names replica `name` is dialed by: its stable name (what peers check), then the host of
    its address when that is a DNS name (the pod's FQDN on a cluster; loopback addresses are IPs)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return (name, host) if host and host != name else (name,)
    return (name,)


def simulated_attack(index: int, replicas: int, attack: AttackSpec | None) -> SimulatedAttack | None:
    """What replica `index` of a role of `replicas` simulates under the role's `attack`: Byzantine
    behaviour goes to the highest indices, so replica 0 of each role is always correct."""
    if attack is None or index not in attack.indices(replicas):
        return None
    return SimulatedAttack(attack.name, dict(attack.params))


def make_plan(job: Job, addressing: Addressing) -> Plan:
    """Every replica of `job`, with the addresses `addressing` gives them."""
    spec = job.spec
    roles = [(role, spec.role_spec(role).replicas, spec.role_spec(role), spec.attack_on(role))
             for role in spec.topology.roles]

    names = {role: [replica_name(job.name, role, i) for i in range(count)] for role, count, _, _ in roles}
    addresses = {role: [addressing.address(role, i, names[role][i]) for i in range(count)] for role, count, _, _ in roles}
    server_addresses = addresses.get(SERVER, [])
    worker_addresses = addresses.get(WORKER, addresses.get(PEER, []))
    spec_json = json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))

    replicas: list[Replica] = []
    for role, count, role_spec, attack in roles:
        for index in range(count):
            name = names[role][index]
            ports = addressing.ports(role, index)
            bad = simulated_attack(index, count, attack)
            env = {
                contract.ENV_JOB_NAME: job.name,
                contract.ENV_ROLE: str(role),
                contract.ENV_INDEX: str(index),
                contract.ENV_SPEC: spec_json,
                contract.ENV_LISTEN: addressing.listen(role, index),
                contract.ENV_METRICS_PORT: str(ports["metrics"]),
                contract.ENV_SERVERS: ",".join(server_addresses),
                contract.ENV_WORKERS: ",".join(worker_addresses),
            }
            if bad is not None:
                env[contract.ENV_ATTACK] = bad.to_env()
            if spec.output_path:
                env[contract.ENV_OUTPUT_DIR] = spec.output_path
            if spec.mutual_tls:
                env[contract.ENV_TLS_DIR] = TLS_MOUNT_PATH
            for var in role_spec.template.env:
                env[var["name"]] = var.get("value", "")
            replicas.append(
                Replica(
                    role=role,
                    index=index,
                    name=name,
                    command=list(NODE_COMMAND),
                    env=env,
                    ports=ports,
                    resources=role_spec.template.resources,
                    node_selector=role_spec.template.node_selector,
                    tolerations=role_spec.template.tolerations,
                    pod=role_spec.template.pod,
                    address=addresses[role][index],
                    attack=bad,
                    identity=ReplicaIdentity(job.namespace, job.name, role, index) if spec.mutual_tls else None,
                    dns_names=dns_names(name, addresses[role][index]),
                )
            )
    return Plan(job.name, job.namespace, spec.topology, addressing.service_name(job.name), replicas)
