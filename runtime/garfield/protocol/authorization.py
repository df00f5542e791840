"""Which role may ask a replica for which kind of tensor: the one table servers apply under
mutual TLS, after the caller's certificate told them who is asking.

Gradients and proposals are inputs of the primary role's aggregations (servers aggregate
workers' gradients and each other's proposals; decentralized peers do both), so only that role
may pull them: a worker reading other workers' gradients learns what the attack papers assume
Byzantine workers can see, and gets nothing it needs. Models are what every replica pulls
(workers from servers, peers from peers), so any replica of the job may read them.
"""

from __future__ import annotations

from garfield.proto import GRADIENT, MODEL, PROPOSAL
from garfield.spec.kinds import Role, Topology

# kind -> whether only the primary role may ask (True) or any replica of the job (False)
PRIMARY_ONLY: dict[int, bool] = {GRADIENT: True, PROPOSAL: True, MODEL: False}


def may_request(topology: Topology, role: Role, kind: int) -> bool:
    """Whether a replica of `role` may ask for tensors of `kind` in a job of `topology`."""
    if kind not in PRIMARY_ONLY:
        return False
    return role is topology.primary_role or not PRIMARY_ONLY[kind]
