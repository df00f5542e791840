"""Success: a quorum (n - f) of the servers (peers when decentralized) finished training.

Training ends on the servers; workers may still be pulling a last model, and up to f servers may be
Byzantine or crashed, so waiting for all of them would let one bad server hold the job open.
"""

from __future__ import annotations

from garfield.plan import Plan
from garfield.spec.model import JobSpec

from garfield_operator.observe import PodView
from garfield_operator.policies.failure import tolerated


def completion_role(plan: Plan) -> str:
    return "peer" if plan.topology == "decentralized" else "server"


def succeeded(plan: Plan, views: dict[str, PodView], spec: JobSpec) -> tuple[bool, str]:
    role = completion_role(plan)
    replicas = plan.by_role(role)
    done = sum(1 for r in replicas if r.name in views and views[r.name].succeeded)
    needed = len(replicas) - tolerated(spec, role)
    return done >= needed, f"{done} of {len(replicas)} {role}s finished training (quorum {needed})"
