"""The Garfield protocol nodes: parameter servers, workers and decentralized peers.

`garfield.node.protocol_node` picks the class of a replica's role (and gives it its typed attack).
"""

from garfield.protocol.base import Contribution, ProtocolNode
from garfield.protocol.peer import PeerNode
from garfield.protocol.quorum import CallPolicy, QuorumError, adopted_step, gather
from garfield.protocol.server import ServerNode
from garfield.protocol.worker import WorkerNode

__all__ = ["Contribution", "ProtocolNode", "PeerNode", "ServerNode", "WorkerNode", "CallPolicy",
           "QuorumError", "adopted_step", "gather"]
