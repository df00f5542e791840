"""The job's phase (status.phase, summary.json's outcome) and the reasons that end a job."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """Where a job is. Terminal phases never change again (see :attr:`terminal`)."""

    PENDING = "Pending"  # replicas starting; no quorum of every role running yet
    RUNNING = "Running"  # a quorum (n - f) of every role is running
    RESTARTING = "Restarting"  # was running, lost replicas are being replaced
    SUSPENDED = "Suspended"  # runPolicy.suspend: no replica runs
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        """Whether the job is over (KubeRay's IsJobDeploymentTerminal)."""
        return self in TERMINAL


TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED})


class Reason(StrEnum):
    """Why a job reached its verdict (the condition's reason on a cluster, CamelCase)."""

    SUCCEEDED = "JobSucceeded"
    TOO_MANY_FAILURES = "TooManyFailures"
