"""The Garfield protocol nodes: parameter servers, workers and decentralized peers."""

from garfield.protocol.base import Contribution, NodeConfig, ProtocolNode
from garfield.protocol.peer import PeerNode
from garfield.protocol.quorum import CallPolicy, QuorumError, adopted_step, gather
from garfield.protocol.server import ServerNode
from garfield.protocol.worker import WorkerNode

ROLES = {"server": ServerNode, "worker": WorkerNode, "peer": PeerNode}

__all__ = ["Contribution", "NodeConfig", "ProtocolNode", "PeerNode", "ServerNode", "WorkerNode", "CallPolicy",
           "QuorumError", "adopted_step", "gather", "ROLES"]
