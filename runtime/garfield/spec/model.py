"""Typed, normalised view of a ByzantineTrainingJob spec.

Built only from a manifest that passed the structural check (defaults filled), so the fields here
are never missing. Readers use these attributes instead of digging through dicts; `to_dict`
gives back the normalised manifest spec, which travels to every replica as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from garfield.aggregators.preaggregation import Stage, describe
from garfield.attacks.catalog import WITHHOLDING
from garfield.spec.kinds import Role, Topology

# spec.security.mutualTLS when the manifest leaves it out (the CRD schema's default is this constant).
MUTUAL_TLS_DEFAULT = True


def mutual_tls_of(spec: Mapping[str, Any]) -> bool:
    """spec.security.mutualTLS of a job's spec as written: on unless set false. The one place for the
    default: the job model reads it, and so does the operator, which needs it before validating a job."""
    return bool((spec.get("security") or {}).get("mutualTLS", MUTUAL_TLS_DEFAULT))


@dataclass(frozen=True)
class GarSpec:
    """A role's rule, its parameters and the pre-aggregation stages run before it (as the manifest
    gives them; `aggregate()` and validation fill in the defaults)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    pre: tuple[Stage, ...] = ()

    @property
    def label(self) -> str:
        """'nnm -> median': the chain and the rule, as summaries name them."""
        return f"{describe(self.pre)} -> {self.name}" if self.pre else self.name


def gpu_count(resources: dict[str, dict[str, Any]]) -> int:
    """GPUs a container asks for: limits win (Kubernetes requires requests == limits for GPUs)."""
    for section in ("limits", "requests"):
        value = resources.get(section, {}).get("nvidia.com/gpu")
        if value is not None:
            return int(value)
    return 0


@dataclass(frozen=True)
class PodOptions:
    """The pod-template fields only a pod has (volumes, identity, scheduling, metadata, security
    context): the plan hands them to each replica, the operator renders them, `garfield run`
    ignores them. Values are the manifest's, Kubernetes-shaped (camelCase keys)."""

    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    env_from: list[dict[str, Any]] = field(default_factory=list)
    service_account_name: str | None = None
    image_pull_secrets: list[dict[str, str]] = field(default_factory=list)
    image_pull_policy: str | None = None
    affinity: dict[str, Any] = field(default_factory=dict)
    priority_class_name: str | None = None
    scheduler_name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    pod_security_context: dict[str, Any] = field(default_factory=dict)
    security_context: dict[str, Any] = field(default_factory=dict)
    allow_weaker_security_context: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, under their template names (what `garfield plan` prints)."""
        values = {
            "volumes": self.volumes, "volumeMounts": self.volume_mounts, "envFrom": self.env_from,
            "serviceAccountName": self.service_account_name, "imagePullSecrets": self.image_pull_secrets,
            "imagePullPolicy": self.image_pull_policy, "affinity": self.affinity,
            "priorityClassName": self.priority_class_name, "schedulerName": self.scheduler_name,
            "labels": self.labels, "annotations": self.annotations, "podSecurityContext": self.pod_security_context,
            "securityContext": self.security_context,
            "allowWeakerSecurityContext": self.allow_weaker_security_context,
        }
        return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class PodTemplate:
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    env: list[dict[str, str]] = field(default_factory=list)
    pod: PodOptions = field(default_factory=PodOptions)

    @property
    def gpus(self) -> int:
        return gpu_count(self.resources)


@dataclass(frozen=True)
class RoleSpec:
    replicas: int
    byzantine: int
    gar: GarSpec
    template: PodTemplate

    @property
    def quorum(self) -> int:
        """q = n - f: how many replies a node of the other role waits for."""
        return self.replicas - self.byzantine


@dataclass(frozen=True)
class AttackSpec:
    count: int
    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def indices(self, replicas: int) -> range:
        """The replicas that simulate the attack: the highest indices, so replica 0 of each role is
        always correct (the plan, the launchers and the nodes' scheduling all ask this)."""
        return range(max(0, replicas - self.count), replicas)

    @property
    def answers(self) -> bool:
        """Whether the attack answers requests at all (see attacks.catalog.WITHHOLDING)."""
        return self.name not in WITHHOLDING


@dataclass(frozen=True)
class Timeouts:
    rpc_seconds: float = 30.0
    startup_seconds: float = 300.0


@dataclass(frozen=True)
class TrainingSpec:
    steps: int = 1000
    batch_size: int = 32
    learning_rate: float | None = None
    worker_momentum: float = 0.9
    evaluation_interval: int = 50
    seed: int = 1
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True)
class RunPolicy:
    backoff_limit: int = 3
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None
    clean_pod_policy: str = "Running"
    restart_policy: str = "OnFailure"
    suspend: bool = False


@dataclass(frozen=True)
class CheckpointSpec:
    """spec.checkpoint: every_steps 0 writes none."""

    every_steps: int = 0
    keep: int = 3

    @property
    def enabled(self) -> bool:
        return self.every_steps > 0


@dataclass(frozen=True)
class TaskSpec:
    entrypoint: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobSpec:
    framework: str
    task: TaskSpec
    topology: Topology
    workers: RoleSpec
    servers: RoleSpec | None
    training: TrainingSpec
    worker_attack: AttackSpec | None
    server_attack: AttackSpec | None
    run_policy: RunPolicy
    image: str | None
    output_path: str | None = None  # spec.output.path: where correct servers write the final model
    mutual_tls: bool = True  # spec.security.mutualTLS: replicas authenticate each other (garfield.security)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)  # spec.checkpoint
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The normalised spec (defaults filled, topology resolved), as sent to replicas."""
        return self.raw

    def role_spec(self, role: Role) -> RoleSpec:
        """The spec section sizing `role` (peers are sized by `workers`)."""
        if role is Role.SERVER:
            if self.servers is None:
                raise ValueError(f"a {self.topology} job has no servers")
            return self.servers
        return self.workers

    def tolerated(self, role: Role) -> int:
        """f for `role`: how many of its replicas may be faulty (Byzantine or crashed) at once."""
        return self.role_spec(role).byzantine

    def attack_on(self, role: Role) -> AttackSpec | None:
        """The simulated attack some replicas of `role` run (evaluation jobs), if any."""
        return self.server_attack if role is Role.SERVER else self.worker_attack

    def simulated_byzantine(self, role: Role) -> int:
        """How many replicas of `role` the plan makes Byzantine (they count against f)."""
        attack = self.attack_on(role)
        return len(attack.indices(self.role_spec(role).replicas)) if attack else 0


def _template(d: dict[str, Any]) -> PodTemplate:
    return PodTemplate(
        resources=d.get("resources", {}),
        node_selector=d.get("nodeSelector", {}),
        tolerations=d.get("tolerations", []),
        env=d.get("env", []),
        pod=PodOptions(
            volumes=d.get("volumes", []),
            volume_mounts=d.get("volumeMounts", []),
            env_from=d.get("envFrom", []),
            service_account_name=d.get("serviceAccountName"),
            image_pull_secrets=d.get("imagePullSecrets", []),
            image_pull_policy=d.get("imagePullPolicy"),
            affinity=d.get("affinity", {}),
            priority_class_name=d.get("priorityClassName"),
            scheduler_name=d.get("schedulerName"),
            labels=d.get("labels", {}),
            annotations=d.get("annotations", {}),
            pod_security_context=d.get("podSecurityContext", {}),
            security_context=d.get("securityContext", {}),
            allow_weaker_security_context=bool(d.get("allowWeakerSecurityContext", False)),
        ),
    )


def _role(d: dict[str, Any]) -> RoleSpec:
    gar = d.get("gar", {})
    return RoleSpec(
        replicas=d["replicas"],
        byzantine=d.get("byzantine", 0),
        gar=GarSpec(gar.get("name", "median"), dict(gar.get("params", {})),
                    tuple(Stage(s["name"], dict(s.get("params") or {})) for s in gar.get("preAggregation", []))),
        template=_template(d.get("template", {})),
    )


def _attack(d: dict[str, Any] | None) -> AttackSpec | None:
    if not d or d.get("count", 0) == 0:
        return None
    return AttackSpec(count=d["count"], name=d["name"], params=dict(d.get("params", {})))


def derive_topology(spec: dict[str, Any]) -> str:
    """spec.topology, or the one the servers imply; a plain string (`.value`), as it goes into the
    manifest mapping that is serialised (YAML's safe dumper refuses str subclasses)."""
    topology: str | None = spec.get("topology")
    if topology:
        return topology
    servers = spec.get("servers")
    if servers is None:
        return Topology.DECENTRALIZED.value
    return (Topology.SSMW if servers.get("replicas", 1) == 1 else Topology.MSMW).value


def from_dict(spec: dict[str, Any]) -> JobSpec:
    """Build the typed spec from a structurally valid, defaulted `spec` mapping."""
    spec = dict(spec)
    spec["topology"] = derive_topology(spec)
    training = spec.get("training", {})
    timeouts = training.get("timeouts", {})
    policy = spec.get("runPolicy", {})
    attack = spec.get("attack", {})
    return JobSpec(
        framework=spec.get("framework", "pytorch"),
        task=TaskSpec(spec["task"]["entrypoint"], dict(spec["task"].get("args", {}))),
        topology=Topology(spec["topology"]),
        workers=_role(spec["workers"]),
        servers=_role(spec["servers"]) if spec.get("servers") else None,
        training=TrainingSpec(
            steps=training.get("steps", 1000),
            batch_size=training.get("batchSize", 32),
            learning_rate=training.get("learningRate"),
            worker_momentum=training.get("workerMomentum", 0.9),
            evaluation_interval=training.get("evaluationInterval", 50),
            seed=training.get("seed", 1),
            timeouts=Timeouts(timeouts.get("rpcSeconds", 30.0), timeouts.get("startupSeconds", 300.0)),
        ),
        worker_attack=_attack(attack.get("workers")),
        server_attack=_attack(attack.get("servers")),
        run_policy=RunPolicy(
            backoff_limit=policy.get("backoffLimit", 3),
            active_deadline_seconds=policy.get("activeDeadlineSeconds"),
            ttl_seconds_after_finished=policy.get("ttlSecondsAfterFinished"),
            clean_pod_policy=policy.get("cleanPodPolicy", "Running"),
            restart_policy=policy.get("restartPolicy", "OnFailure"),
            suspend=policy.get("suspend", False),
        ),
        image=spec.get("image"),
        output_path=(spec.get("output") or {}).get("path"),
        mutual_tls=mutual_tls_of(spec),
        checkpoint=CheckpointSpec(
            every_steps=int((spec.get("checkpoint") or {}).get("everySteps", CheckpointSpec.every_steps)),
            keep=int((spec.get("checkpoint") or {}).get("keep", CheckpointSpec.keep))),
        raw=spec,
    )
