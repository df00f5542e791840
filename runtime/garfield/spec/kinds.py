"""The job's vocabulary as types: the roles a replica plays and the topologies a job takes.

`str` enums, so a value reads and serialises as the plain string the manifest, the environment
contract and the pod labels carry ("server", "decentralized"), while code compares members and a
typo is an AttributeError instead of a comparison that is silently never true.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What a replica does. Peers are the replicas of a decentralized job (workers that also hold a model)."""

    SERVER = "server"
    WORKER = "worker"
    PEER = "peer"

    @property
    def spec_key(self) -> str:
        """The spec section (and status.replicaStatuses key) sizing this role: peers are `workers`."""
        return "servers" if self is Role.SERVER else "workers"


class Topology(StrEnum):
    """How the replicas are arranged (spec.topology, or derived from the server count)."""

    SSMW = "ssmw"  # one server, many workers
    MSMW = "msmw"  # replicated servers, many workers
    DECENTRALIZED = "decentralized"  # peers only

    @property
    def roles(self) -> tuple[Role, ...]:
        """The roles a job of this topology runs, in plan order."""
        return (Role.PEER,) if self is Topology.DECENTRALIZED else (Role.SERVER, Role.WORKER)

    @property
    def worker_role(self) -> Role:
        """The worker-side role: the replicas sized by spec.workers, that compute gradients
        (peers in a decentralized job, workers otherwise)."""
        return Role.PEER if self is Topology.DECENTRALIZED else Role.WORKER

    @property
    def primary_role(self) -> Role:
        """The role whose correct replicas hold the model, report progress and decide success."""
        return Role.PEER if self is Topology.DECENTRALIZED else Role.SERVER
