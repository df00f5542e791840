"""Failure policy: tolerate up to f lost replicas per role, recreate failed pods within backoffLimit.

Tolerating f Byzantine replicas means tolerating f crashed ones: the others wait for n - f replies,
so a pod failure within f is not a job failure. A replica counts as lost from its pod's failure
until its replacement runs; more than f lost in one role at once means the role cannot form its
quorum, and the job fails with TooManyFailures. Each recreation counts against backoffLimit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from garfield.plan import Plan
from garfield.spec.model import JobSpec

from garfield_operator import constants as C
from garfield_operator.observe import PodView


@dataclass
class FailureOutcome:
    lost: dict[str, list[str]] = field(default_factory=dict)  # role -> replica names lost now
    recreate: list[PodView] = field(default_factory=list)  # failed pods to delete and recreate
    terminal_reason: str = ""
    terminal_message: str = ""


def tolerated(spec: JobSpec, role: str) -> int:
    if role == "server":
        return spec.servers.byzantine if spec.servers else 0
    return spec.workers.byzantine


def _is_lost(view: PodView | None) -> bool:
    # A missing pod is not counted: it is recreated in the same pass, as a replacement when the job
    # had started, and then counts as lost until it runs.
    if view is None or view.succeeded:
        return False
    if view.failed or view.terminating:
        return True
    return view.replacement and not view.running


def evaluate(plan: Plan, views: dict[str, PodView], spec: JobSpec, restarts: int) -> FailureOutcome:
    out = FailureOutcome()
    for replica in plan.replicas:
        if _is_lost(views.get(replica.name)):
            out.lost.setdefault(replica.role, []).append(replica.name)
    for role, names in sorted(out.lost.items()):
        f = tolerated(spec, role)
        if len(names) > f:
            details = "; ".join(
                f"{n} ({views[n].failure})" if n in views and views[n].failure else n for n in names)
            out.terminal_reason = C.R_TOO_MANY_FAILURES
            out.terminal_message = (f"{len(names)} {role}s lost, more than the f={f} the job tolerates "
                                    f"(spec.{C.STATUS_KEY[role]}.byzantine): {details}")
            return out
    failed = [views[r.name] for r in plan.replicas if r.name in views and views[r.name].failed]
    if not failed or spec.run_policy.restart_policy == "Never":
        return out
    limit = spec.run_policy.backoff_limit
    if restarts + len(failed) > limit:
        names = ", ".join(f"{v.name} ({v.failure})" for v in failed)
        out.terminal_reason = C.R_BACKOFF_LIMIT
        out.terminal_message = (f"{restarts} pod recreations so far; recreating {names} would exceed "
                                f"runPolicy.backoffLimit={limit}")
        return out
    out.recreate = failed
    return out
