"""Turning a job into the replicas to run, and addressing them."""

from garfield.plan.addressing import Addressing, ClusterDNS, Loopback
from garfield.plan.replicas import PEER, SERVER, WORKER, Plan, Replica, make_plan, replica_name

__all__ = ["Addressing", "ClusterDNS", "Loopback", "PEER", "SERVER", "WORKER", "Plan", "Replica", "make_plan", "replica_name"]
