"""Whether failed replicas are started again: runPolicy.restartPolicy and backoffLimit, for both launchers.

The operator recreates a failed pod and `garfield run` restarts a crashed process by this one
rule, after :func:`garfield.lifecycle.decide` found the job can go on (a role over its f fails
the job first, restarts or not). Each restart counts against backoffLimit for the whole job; one
that would exceed it fails the job (BackoffLimitExceeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from garfield.spec.model import JobSpec


class Restart(StrEnum):
    NOTHING = "nothing"  # no replica failed
    NEVER = "never"  # restartPolicy Never: failed replicas stay down
    RESTART = "restart"  # start the failed replicas again
    BACKOFF_LIMIT = "backoff-limit"  # restarting them would exceed backoffLimit: the job fails


@dataclass(frozen=True)
class RestartDecision:
    action: Restart
    message: str = ""


def restart_decision(spec: JobSpec, restarts: int, failed: Sequence[str]) -> RestartDecision:
    """What to do with the replicas `failed` (each described, e.g. "job-server-1 (exit 1)") after
    `restarts` restarts so far in this job."""
    if not failed:
        return RestartDecision(Restart.NOTHING)
    if spec.run_policy.restart_policy == "Never":
        return RestartDecision(Restart.NEVER)
    limit = spec.run_policy.backoff_limit
    if restarts + len(failed) > limit:
        return RestartDecision(Restart.BACKOFF_LIMIT,
                               f"{restarts} restarts so far; restarting {', '.join(failed)} would exceed "
                               f"runPolicy.backoffLimit={limit}")
    return RestartDecision(Restart.RESTART)
