"""The job's fate from its replicas' states: failed, succeeded, or still undecided.

Failure: a role has more faulty replicas than its f. Faulty means simulated Byzantine (whatever it
is doing) or lost (a correct replica that crashed or whose pod is gone). With f faulty the others
still gather their n - f replies; one more and the protocol promises nothing, so the job fails
at once instead of training on without its guarantee. A role only fails for a loss: attackers
alone, however many, are the experiment, not a fault of the run.

Success: n - f correct replicas of the primary role (servers, or peers when decentralized)
finished training. Up to f replicas may be Byzantine or crashed, so waiting for every one of them
would let one bad replica hold the job open; with b simulated attackers among the primaries this
asks for every correct one that is not lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from garfield.lifecycle.phase import Phase, Reason
from garfield.lifecycle.replica import Health, ReplicaState
from garfield.spec.kinds import Role
from garfield.spec.model import JobSpec


@dataclass(frozen=True)
class Fault:
    """A role with more faulty replicas than it tolerates."""

    role: Role
    tolerated: int
    byzantine: int
    lost: tuple[ReplicaState, ...]

    @property
    def faulty(self) -> int:
        return self.byzantine + len(self.lost)

    def message(self) -> str:
        details = "; ".join(f"{r.name} ({r.detail})" if r.detail else r.name for r in self.lost)
        return f"{self.headline()}: {details}"

    def headline(self) -> str:
        """The fault without the launcher-specific details of each lost replica."""
        lost = len(self.lost)
        besides = f" besides {self.byzantine} simulated Byzantine" if self.byzantine else ""
        return (f"{lost} {self.role}{'' if lost == 1 else 's'} lost{besides}, {self.faulty} faulty, more than the "
                f"f={self.tolerated} the job tolerates (spec.{self.role.spec_key}.byzantine)")


@dataclass(frozen=True)
class Verdict:
    phase: Phase  # SUCCEEDED or FAILED
    reason: Reason
    message: str
    fault: Fault | None = field(default=None, compare=False)


def faults(spec: JobSpec, replicas: Iterable[ReplicaState]) -> list[Fault]:
    """Every role over its f, in role order (empty while the job can go on)."""
    states = list(replicas)
    out = []
    for role in spec.topology.roles:
        members = [r for r in states if r.role == role]
        lost = tuple(r for r in members if not r.byzantine and r.health is Health.LOST)
        fault = Fault(role, spec.tolerated(role), sum(r.byzantine for r in members), lost)
        if lost and fault.faulty > fault.tolerated:
            out.append(fault)
    return out


def finished_needed(spec: JobSpec) -> int:
    """How many correct primaries must finish for success: n - f (at least one)."""
    role = spec.topology.primary_role
    return max(1, spec.role_spec(role).replicas - spec.tolerated(role))


def decide(spec: JobSpec, replicas: Iterable[ReplicaState]) -> Verdict | None:
    """The job's verdict once its fate is known, else None (keep running)."""
    states = list(replicas)
    over = faults(spec, states)
    if over:
        return Verdict(Phase.FAILED, Reason.TOO_MANY_FAILURES, over[0].message(), over[0])
    role = spec.topology.primary_role
    correct = [r for r in states if r.role == role and not r.byzantine]
    done = sum(r.health is Health.FINISHED for r in correct)
    needed = finished_needed(spec)
    if done >= needed:
        return Verdict(Phase.SUCCEEDED, Reason.SUCCEEDED,
                       f"{done} of {len(correct)} correct {role}s finished training (quorum {needed})")
    return None
