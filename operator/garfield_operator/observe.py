"""What a pod's status means for its job (pure).

Kubeflow users' top complaints are failed pods reported as running and stuck pods reported as
nothing: this module reads the kubelet's and scheduler's signals (phase, container states,
PodScheduled) into one small record per pod, with a human reason for every bad state.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from garfield.lifecycle import Health, ReplicaState
from garfield.plan import Plan, Replica

from garfield_operator import constants as C

# Container waiting reasons that never resolve by waiting on their own.
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                                "RegistryUnavailable"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


@dataclass(frozen=True)
class PodView:
    name: str
    uid: str
    role: str
    index: int
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    ready: bool
    terminating: bool
    replacement: bool
    pod_ip: str
    failure: str = ""  # why it failed, for Failed pods
    problem_reason: str = ""  # ImagePullBackOff | Unschedulable | CreateContainerConfigError, for stuck pods
    problem: str = ""
    final_message: str = ""  # a finished container's termination message (its last status, as JSON)

    @property
    def active(self) -> bool:
        return not self.terminating and self.phase in ("Pending", "Running", "Unknown")

    @property
    def failed(self) -> bool:
        return self.phase == "Failed"

    @property
    def succeeded(self) -> bool:
        return self.phase == "Succeeded"

    @property
    def running(self) -> bool:
        return self.phase == "Running" and not self.terminating


def _failure(status: dict[str, Any]) -> str:
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            reason = term.get("reason") or "Error"
            detail = f"exit code {term.get('exitCode')}" if term.get("exitCode") is not None else ""
            msg = term.get("message") or ""
            return ": ".join(p for p in (reason, ", ".join(x for x in (detail, msg) if x)) if p)
    if status.get("reason") or status.get("message"):
        return ": ".join(p for p in (status.get("reason"), status.get("message")) if p)
    return "Failed"


def _final_message(status: dict[str, Any]) -> str:
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") == C.CONTAINER_NAME:
            return str(((cs.get("state") or {}).get("terminated") or {}).get("message") or "")
    return ""


def _problem(status: dict[str, Any]) -> tuple[str, str]:
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        if reason in IMAGE_PULL_REASONS:
            image = cs.get("image") or ""
            detail = waiting.get("message") or reason
            return C.R_IMAGE_PULL, f"cannot pull image {image!r}: {detail}" if image else detail
        if reason in CONFIG_REASONS:
            return C.R_CONTAINER_CONFIG, waiting.get("message") or reason
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            return C.R_UNSCHEDULABLE, cond.get("message") or "no node fits the pod"
    return "", ""


def view(pod: dict[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    labels = meta.get("labels") or {}
    phase = status.get("phase") or "Pending"
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    failure = _failure(status) if phase == "Failed" else ""
    reason, problem = _problem(status) if phase == "Pending" else ("", "")
    try:
        index = int(labels.get(C.LABEL_INDEX, "-1"))
    except ValueError:
        index = -1
    return PodView(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        role=labels.get(C.LABEL_ROLE, ""),
        index=index,
        phase=phase,
        ready=ready and phase == "Running",
        terminating=bool(meta.get("deletionTimestamp")),
        replacement=(meta.get("annotations") or {}).get(C.ANNOTATION_REPLACEMENT) == "true",
        pod_ip=status.get("podIP") or "",
        failure=failure,
        problem_reason=reason,
        problem=problem,
        final_message=_final_message(status) if phase == "Succeeded" else "",
    )


def health(v: PodView | None, created: bool = False) -> Health:
    """A pod's state in the lifecycle's terms (garfield.lifecycle, shared with `garfield run`).

    `created`: whether the replica has had a pod before (status.createdReplicas). A replica never
    created is STARTING whether its pod is missing (not created yet: its create may have been
    refused, by a quota, an admission plugin, a missing ServiceAccount...) or Pending: a refused
    create is not a failed replica. A replica that had a pod is LOST while its pod is gone and until
    its replacement runs, whether or not the apiserver accepts the replacement.
    """
    if v is None:
        return Health.LOST if created else Health.STARTING
    if v.succeeded:
        return Health.FINISHED
    if v.failed or v.terminating or (v.replacement and not v.running):
        return Health.LOST
    return Health.RUNNING if v.running else Health.STARTING


def _lost_detail(v: PodView | None, refused: str) -> str:
    if v is None:
        return f"its replacement was refused: {refused}" if refused else "its pod is gone"
    if v.failed:
        return v.failure
    return "deleted" if v.terminating else ""


def replica_state(replica: Replica, v: PodView | None, created: bool = False, refused: str = "") -> ReplicaState:
    """`refused`: the apiserver's message when the replica's last pod create was refused."""
    state = health(v, created)
    return ReplicaState(replica.name, replica.role, replica.byzantine, state,
                        _lost_detail(v, refused) if state is Health.LOST else "")


def replica_states(plan: Plan, views: dict[str, PodView], created: Collection[str] = (),
                   refused: Mapping[str, str] | None = None) -> list[ReplicaState]:
    """Every replica of the plan in the lifecycle's terms. `created`: the replicas that have had a
    pod (status.createdReplicas and the pods seen now); `refused`: pod name -> the apiserver's
    message, for the pods whose last create it refused."""
    refused = refused or {}
    return [replica_state(r, views.get(r.name), r.name in created, refused.get(r.name, "")) for r in plan.replicas]


def created_replicas(plan: Plan, views: dict[str, PodView], recorded: Iterable[str]) -> list[str]:
    """The plan's replicas that have had a pod: those recorded before (status.createdReplicas) and
    those with a pod now, sorted (what the pass records)."""
    names = {r.name for r in plan.replicas}
    return sorted((set(recorded) & names) | (set(views) & names))
