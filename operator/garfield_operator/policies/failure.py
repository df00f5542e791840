"""Failure policy: a role over its f fails the job; failed pods are recreated within backoffLimit.

Which faults end a job is decided by `garfield.lifecycle` (the same rule as `garfield run`): f
per role covers Byzantine and crashed replicas together, so simulated attackers plus lost pods
beyond f fail the job with TooManyFailures. A replica counts as lost from its pod's failure until
its replacement runs; a replica that never had a pod (its create refused by a quota, an admission
plugin, a missing ServiceAccount...) is not created yet, never lost (garfield_operator.observe).
Whether failed pods are recreated (restartPolicy, backoffLimit) is
`garfield.lifecycle.restart_decision`, the rule `garfield run` restarts crashed processes by.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from garfield.lifecycle import Health, ReplicaState, Restart, faults, restart_decision
from garfield.plan import Plan
from garfield.spec.model import JobSpec

from garfield_operator import constants as C
from garfield_operator.observe import PodView, replica_states


@dataclass
class FailureOutcome:
    lost: dict[str, list[str]] = field(default_factory=dict)  # role -> replica names lost now
    recreate: list[PodView] = field(default_factory=list)  # failed pods to delete and recreate
    terminal_reason: str = ""
    terminal_message: str = ""
    states: list[ReplicaState] = field(default_factory=list)  # every replica, in the lifecycle's terms


def evaluate(plan: Plan, views: dict[str, PodView], spec: JobSpec, restarts: int, created: Collection[str] = (),
             refused: Mapping[str, str] | None = None) -> FailureOutcome:
    """`created`: the replicas that have had a pod; `refused`: pod name -> the apiserver's message
    for the pods whose last create it refused (see observe.replica_states)."""
    out = FailureOutcome(states=replica_states(plan, views, created, refused))
    for state in out.states:
        if state.health is Health.LOST and not state.byzantine:
            out.lost.setdefault(state.role, []).append(state.name)
    over = faults(spec, out.states)
    if over:
        out.terminal_reason = C.R_TOO_MANY_FAILURES
        out.terminal_message = over[0].message()
        return out
    failed = [views[r.name] for r in plan.replicas if r.name in views and views[r.name].failed]
    decision = restart_decision(spec, restarts, [f"{v.name} ({v.failure})" for v in failed])
    if decision.action is Restart.BACKOFF_LIMIT:
        out.terminal_reason = C.R_BACKOFF_LIMIT
        out.terminal_message = decision.message
    elif decision.action is Restart.RESTART:
        out.recreate = failed
    return out
