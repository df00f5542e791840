"""What a launcher observed of one replica, in the terms the lifecycle decides on."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from garfield.spec.kinds import Role


class Health(StrEnum):
    """A replica's state as far as the job's fate goes.

    LOST covers every way a replica stops counting: a crashed process, a failed, deleted or missing
    pod of a replica that had one, and a replacement pod that does not run yet (the replica is lost
    until its replacement runs, so f+1 failures in a row fail the job even while replacements are
    pending or refused). A replica that never started (a pod never created, whose create the
    apiserver refused) is STARTING, not LOST: nothing of it failed.
    """

    STARTING = "starting"  # not running yet (first start, or never created): neither counted nor lost
    RUNNING = "running"
    FINISHED = "finished"  # finished training (exit 0, pod Succeeded, status "done")
    LOST = "lost"


@dataclass(frozen=True)
class ReplicaState:
    name: str
    role: Role
    byzantine: bool  # simulates an attack (evaluation jobs): faulty by design, counts against f
    health: Health
    detail: str = ""  # why it was lost (exit status, pod reason), quoted in a failure message
