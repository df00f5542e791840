"""Success: n - f correct servers (peers when decentralized) finished training.

Decided by `garfield.lifecycle.decide`, the rule `garfield run` uses too: workers may still be
pulling a last model and up to f servers may be Byzantine or crashed, so waiting for all of them
would let one bad server hold the job open.
"""

from __future__ import annotations

from garfield.lifecycle import Phase, ReplicaState, decide
from garfield.spec.model import JobSpec


def succeeded(spec: JobSpec, states: list[ReplicaState]) -> tuple[bool, str]:
    verdict = decide(spec, states)
    if verdict is not None and verdict.phase is Phase.SUCCEEDED:
        return True, verdict.message
    return False, ""
