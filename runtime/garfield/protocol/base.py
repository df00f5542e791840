"""What every protocol node shares: identity, peers, published tensors, request handling,
quorum gathering through the framework adapter, observability and an orderly end.

Roles (:mod:`.server`, :mod:`.worker`, :mod:`.peer`) only write their step loop in
:meth:`ProtocolNode.train`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import grpc.aio

from garfield.adapters.base import FrameworkAdapter, Tensor
from garfield.observability import termination
from garfield.observability.state import NodeState
from garfield.plan.replicas import NodeConfig, replica_name
from garfield.proto import GRADIENT, KIND_NAMES, MODEL, PROPOSAL, TensorRequest
from garfield.protocol.authorization import may_request
from garfield.protocol.board import Board
from garfield.protocol.quorum import CallPolicy, PeerOrder, adopted_step, gather
from garfield.security.identity import ReplicaIdentity
from garfield.spec.kinds import Role
from garfield.spec.model import GarSpec, JobSpec
from garfield.transport.client import Peer, PeerLike, tensor_request
from garfield.transport.inprocess import InProcessNetwork
from garfield.transport.server import RequestRejected, ServerTls, start_server, stop_server
from garfield.wire.codec import Expect, Received, Rejected, dtype_name, encode

log = logging.getLogger("garfield.node")

# After its last step a node keeps answering until the peers that were recently asking it have
# fetched its final tensor, or until nobody has asked anything for this long (crashed or
# Byzantine peers never will). Peers silent for RECENT_SECONDS before the end are not waited for
# (crashed, or asking other replicas under the preferred quorum).
LINGER_IDLE_SECONDS = 3.0
# Exchange streams a node serves at once, per replica of its job: a peer keeps one per kind of
# tensor it asks for (at most three), and one it reopens after a break may overlap the old one for
# a moment; clients opening streams beyond that (and never reading them) are refused.
STREAMS_PER_REPLICA = 4
RECENT_SECONDS = 5.0
# At stop, calls still waiting for a tensor that will never come are ended at once; answers
# already being sent get up to this long to finish (a reader of the final model, a slow peer).
STOP_GRACE_SECONDS = 10.0


def simulated_attackers(spec: JobSpec, me: str) -> frozenset[str]:
    """The peers (by node name, e.g. "worker-6") that simulate an attack which answers requests.

    Only evaluation runs (jobs with `attack`) have them. The node asks them first and puts their
    replies first in its quorums: the worst case an asynchronous network allows (PeerOrder).
    Attacks that withhold replies (crash, silent, drop) cannot be scheduled that way.
    """
    names: set[str] = set()
    roles = [(spec.topology.worker_role, spec.workers.replicas, spec.worker_attack)]
    if spec.servers is not None:
        roles.append((Role.SERVER, spec.servers.replicas, spec.server_attack))
    for role, replicas, attack in roles:
        if attack is not None and attack.answers:
            names.update(f"{role}-{i}" for i in attack.indices(replicas))
    return frozenset(names - {me})


@dataclass
class Contribution:
    """One reply used in an aggregation: the tensor on the device, its step, its sender's loss."""

    tensor: Tensor
    step: int
    loss: float
    sender: str


class ProtocolNode:
    """A node: gRPC service + step loop. Subclasses set `offers` and implement :meth:`train`."""

    offers: tuple[int, ...] = ()
    # Kinds whose request for the last step is a peer's last request to this node (a peer asking
    # a decentralized peer for its step T-1 gradient still needs its step T proposal).
    final_kinds: tuple[int, ...] = (MODEL, PROPOSAL)

    def __init__(self, config: NodeConfig, adapter: FrameworkAdapter, state: NodeState) -> None:
        self.config = config
        self.adapter = adapter
        self.state = state
        self.spec = config.spec
        self.name = config.name
        self.total_steps = config.spec.training.steps
        self.policy = CallPolicy(rpc_seconds=config.spec.training.timeouts.rpc_seconds,
                                 give_up_seconds=max(config.spec.training.timeouts.startup_seconds,
                                                     config.spec.training.timeouts.rpc_seconds))
        sample = adapter.to_numpy(adapter.zeros())
        self.dtype = dtype_name(sample.dtype)
        self.shape = (int(adapter.num_params),)
        self.tensor_bytes = int(sample.nbytes)
        self.boards = {kind: Board() for kind in self.offers}
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._last_request = time.monotonic()
        self._activity = asyncio.Event()
        self._final_seen: set[str] = set()
        self._left: set[str] = set()  # requesters whose Exchange stream ended (see _requester_left)
        self._last_seen: dict[str, float] = {}
        self._orders: dict[tuple[int, bool], PeerOrder] = {}
        self._peers_closed = False  # see _close_peers
        self._waiting: dict[asyncio.Task[Any], tuple[int, int]] = {}  # serve() calls waiting: (kind, step)
        self.attackers = simulated_attackers(config.spec, self.name)
        # Called once training is done, before the node reports "done" and lingers for late peers:
        # its owner exports the final model there (garfield.node.export_model), so a node stopped
        # while it lingers (the job has succeeded) has its model written already. Returns fields for
        # the final status (the termination message), e.g. where the model is; raises to fail the node.
        self.on_trained: Callable[[], Mapping[str, Any]] | None = None
        # The checkpoint step this node's training resumed from (None: it started at step 0); the
        # exported model's manifest records it.
        self.resumed_from: int | None = None
        # Who may name itself in a request: the job's replicas, as the plan numbers them. Anything
        # else is refused before it is remembered (a Byzantine client sending fresh 60 KB names
        # grew the per-requester bookkeeping by 172 MB in 1,500 requests).
        self.replica_names: frozenset[str] = frozenset(
            [f"{Role.SERVER}-{i}" for i in range(len(config.servers))]
            + [f"{config.spec.topology.worker_role}-{i}" for i in range(len(config.workers))])
        # Channels belong to the event loop that runs the node: created in start().
        self.server_peers: list[PeerLike] = []
        self.worker_peers: list[PeerLike] = []
        # `garfield simulate` sets an in-process network before start(): no gRPC service or channel.
        self.network: InProcessNetwork | None = None
        self._serving = False

    # -- set-up --------------------------------------------------------------------------------
    def _peers(self, role: Role, addresses: Sequence[str]) -> list[PeerLike]:
        names = [(f"{role}-{i}", a, i) for i, a in enumerate(addresses) if f"{role}-{i}" != self.name]
        if self.network is not None:
            return [self.network.peer(name, address) for name, address, _ in names]
        # Under mutual TLS each peer must prove it is the replica dialed: its certificate must list
        # the replica's stable name (the plan's replica_name, its first DNS SAN).
        return [Peer(name, address, self.tensor_bytes, tls=self.config.tls,
                     tls_name=replica_name(self.config.job, role, i), on_identity_failure=self._on_reject)
                for name, address, i in names]

    async def start(self) -> int:
        self.server_peers = self._peers(Role.SERVER, self.config.servers)
        self.worker_peers = self._peers(self.spec.topology.worker_role, self.config.workers)
        self._serving = True
        if self.network is not None:
            self.network.listen(self, self.config.listen, on_requester_left=self._requester_left)
            self.port = 0
            log.info("listening", extra={"fields": {"address": self.config.listen, "params": self.shape[0],
                                                    "dtype": self.dtype, "transport": "in-process"}})
            return self.port
        tls = ServerTls(self.config.tls, self) if self.config.tls is not None else None
        self._server, self.port = await start_server(self, self.config.listen, self.tensor_bytes,
                                                     on_requester_left=self._requester_left,
                                                     max_streams=STREAMS_PER_REPLICA * len(self.replica_names),
                                                     tls=tls)
        log.info("listening", extra={"fields": {"address": self.config.listen, "port": self.port,
                                                "params": self.shape[0], "dtype": self.dtype,
                                                "tls": "mutual" if tls is not None else "off"}})
        return self.port

    async def run(self) -> int:
        """Start serving, train, linger for late peers, stop. Returns the process exit code."""
        if not self._serving:
            await self.start()
        code = 0
        try:
            self.state.set_phase("running")
            await self.train()
            final = dict(self.on_trained()) if self.on_trained is not None else {}
            self.state.set_phase("done")
            log.info("done", extra={"fields": {"step": self.state.step, "accuracy": self.state.accuracy,
                                               "loss": self.state.loss, "rejected": self.state.rejected,
                                               "quorums": self.state.quorum_counts(), "timing": self.state.timing()}})
            termination.write_final({**self.state.status(), **final})
            await self._close_peers()  # this node asks nothing more: peers waiting on its requests see it leave
            await self._linger()
        except asyncio.CancelledError:
            self.state.set_phase("failed", "cancelled")
            raise
        except Exception as exc:  # the node fails as a whole; the launcher/operator sees a non-zero exit
            log.exception("failed")
            self.state.set_phase("failed", f"{type(exc).__name__}: {exc}")
            code = 1
        finally:
            await self.stop()
        return code

    async def stop(self) -> None:
        if self._serving:
            self._serving = False
            for task, (kind, step) in list(self._waiting.items()):
                board = self.boards[kind]
                if board.step < step or board.messages is None:  # can never be answered: end it now
                    task.cancel()
            if self.network is not None:
                self.network.stop(self.config.listen)
            if self._server is not None:
                await stop_server(self._server, grace=STOP_GRACE_SECONDS)
                self._server = None
        await self._close_peers()

    async def _close_peers(self) -> None:
        """Close the channels to every peer, once. A node that finished training closes them before
        it lingers (peers waiting on its requests see it leave); stop() closes them on every other
        way out (failure, cancellation) and finds them closed after a finished run."""
        if self._peers_closed:
            return
        self._peers_closed = True
        for peer in self.server_peers + self.worker_peers:
            await peer.close()

    async def train(self) -> None:
        raise NotImplementedError

    # -- authorization (Authority, under mutual TLS) --------------------------------------------
    def authenticate(self, uri: str | None) -> str:
        """The caller's node name: its certificate (signed by the job's CA, or the handshake failed)
        must name a replica of this very job."""
        identity = ReplicaIdentity.parse(uri) if uri else None
        own = self.config.identity
        if identity is None:
            raise RequestRejected("identity", f"the caller's certificate names no replica (URI SAN {str(uri)[:128]!r})")
        if own is not None and (identity.namespace, identity.job) != (own.namespace, own.job):
            raise RequestRejected("identity", f"{identity.uri} is not a replica of {own.namespace}/{own.job}")
        if identity.name not in self.replica_names:
            raise RequestRejected("identity", f"{identity.uri}: this job has no {identity.name}")
        return identity.name

    def permit(self, caller: str, request: TensorRequest) -> None:
        """A request is served only in its caller's own name, and only if the caller's role may ask for it."""
        if request.requester != caller:
            raise RequestRejected("impersonation", f"{caller} asked in the name of {request.requester[:64]!r}")
        role = Role(caller.rsplit("-", 1)[0])
        if not may_request(self.spec.topology, role, request.kind):
            raise RequestRejected("forbidden", f"a {role} may not ask for {KIND_NAMES.get(request.kind, request.kind)}")

    # -- serving (TensorSource) ----------------------------------------------------------------
    async def serve(self, request: TensorRequest) -> list[bytes]:
        if request.kind not in self.boards:
            raise RequestRejected("kind", f"{self.name} offers no {KIND_NAMES.get(request.kind, request.kind)}")
        if not 0 <= request.step <= self.total_steps:
            raise RequestRejected("step", f"step {request.step} outside 0..{self.total_steps}")
        if request.requester and request.requester not in self.replica_names:
            raise RequestRejected("requester", f"{request.requester[:64]!r} names no replica of this job")
        self._note_request(request)
        task = asyncio.current_task()
        if task is not None:  # stop() ends the waits that can never be answered
            self._waiting[task] = (request.kind, request.step)
        try:
            _, messages = await self.boards[request.kind].wait(request.step)
            if messages is None:  # silent for this step: the caller's deadline or quorum ends the call
                await asyncio.Event().wait()
        finally:
            if task is not None:
                self._waiting.pop(task, None)
        assert messages is not None  # a silent step's wait above only ends by cancellation
        return messages

    def _note_request(self, request: TensorRequest) -> None:
        self._last_request = time.monotonic()
        if request.requester:
            self._last_seen[request.requester] = self._last_request
            self._left.discard(request.requester)  # back (a reopened stream): it may still want the end
        final = self.total_steps - 1 if request.kind == GRADIENT else self.total_steps
        if request.kind in self.final_kinds and request.step >= final and request.requester:
            self._final_seen.add(request.requester)
        self._activity.set()

    def status_json(self) -> str:
        return self.state.status_json()

    def count_rejected(self, reason: str, detail: str, peer: str = "") -> None:
        self.state.count_rejected(reason)
        log.warning("rejected message", extra={"fields": {"reason": reason, "peer": peer, "detail": detail}})

    def _on_reject(self, peer: PeerLike, exc: Rejected) -> None:
        self.count_rejected(exc.reason, exc.detail, peer.name)

    # -- publishing and gathering --------------------------------------------------------------
    async def publish(self, kind: int, step: int, tensor: Tensor | None, loss: float = math.nan) -> None:
        """Offer `tensor` (None: answer nothing) as this node's `kind` of `step`, encoded once."""
        messages = None
        if tensor is not None:
            messages = encode(self.adapter.to_numpy(tensor), kind=kind, step=step, sender=self.name, loss=loss)
        await self.boards[kind].publish(step, messages)

    async def collect(self, peers: Sequence[PeerLike], q: int, kind: int, min_step: int,
                      local: Sequence[Contribution] = ()) -> list[Contribution]:
        """The first q contributions of `kind` at step >= min_step: `local` ones first, then peers'."""
        contributions = list(local)
        need = q - len(contributions)
        if need > 0:
            request = tensor_request(kind, min_step, self.name)

            def expect(peer: PeerLike) -> Expect:
                return Expect(kind=kind, sender=peer.name, dtype=self.dtype, shape=self.shape, min_step=min_step,
                              max_step=self.total_steps)

            key = (kind, peers is self.server_peers)
            order = self._orders.get(key)
            if order is None:
                order = self._orders[key] = PeerOrder(first=[p.name for p in peers if p.name in self.attackers])
            refused: list[str] = []

            def on_reject(peer: PeerLike, exc: Rejected) -> None:
                refused.append(peer.name)
                self._on_reject(peer, exc)

            replies: list[Received] = await gather(peers, need, request, expect, self.policy, on_reject, order)
            contributions += [Contribution(self.adapter.from_numpy(r.array), r.step, r.loss, r.sender) for r in replies]
            # The attack reached this quorum when an attacker's reply was aggregated or refused
            # (a non-finite or malformed reply is refused before aggregation: that is the defence).
            reached = {c.sender for c in contributions[:q]} | set(refused)
            self.state.count_quorum(KIND_NAMES[kind], attackable=any(p.name in self.attackers for p in peers),
                                    attacked=bool(reached & self.attackers))
        return contributions[:q]

    def aggregate(self, gar: GarSpec, f: int, contributions: Sequence[Contribution]) -> Tensor:
        """The role's pre-aggregation and rule applied to the contributions' tensors, on the device
        (one input: itself)."""
        if len(contributions) == 1:
            return contributions[0].tensor
        stacked = self.adapter.stack([c.tensor for c in contributions])
        return self.adapter.aggregate(gar.name, stacked, f, pre=gar.pre, **gar.params)

    @staticmethod
    def next_step(contributions: Sequence[Contribution], f: int) -> int:
        return adopted_step([c.step for c in contributions], f)

    @staticmethod
    def median_loss(contributions: Sequence[Contribution]) -> float | None:
        """The median of the senders' reported losses: what a Byzantine minority cannot move far."""
        losses = [c.loss for c in contributions if math.isfinite(c.loss)]
        return statistics.median(losses) if losses else None

    def maybe_evaluate(self, step: int) -> None:
        interval = self.spec.training.evaluation_interval
        if step >= self.total_steps or (interval > 0 and step % interval == 0):
            result = self.adapter.evaluate()
            if result:
                self.state.set_accuracy(result.get("accuracy"))
                log.info("evaluation", extra={"fields": {"step": step, **result}})

    # -- the end -------------------------------------------------------------------------------
    def expected_final_requesters(self) -> set[str]:
        """Peers that will ask this node for its final tensor (they are waited for before exit)."""
        return set()

    def _requester_left(self, name: str) -> None:
        """A peer closed its Exchange stream to this node: it is done (a finished node closes its
        channels before lingering) or gone, so it will ask nothing more; wakes the linger."""
        if name not in self.replica_names:
            return  # its requests were refused; nothing was remembered of it
        self._left.add(name)
        self._activity.set()

    async def _linger(self) -> None:
        """Serve late peers before leaving: until every recently seen expected requester has asked for
        this node's final tensor or has left (closed its stream: finished nodes do, so two finished
        nodes that never needed each other's last answer do not wait on each other), at most
        LINGER_IDLE_SECONDS after the last request and the RPC deadline in all."""
        now = time.monotonic()
        expected = {name for name in self.expected_final_requesters()
                    if self._last_seen.get(name, -math.inf) >= now - RECENT_SECONDS}
        cap = now + self.policy.rpc_seconds
        while not expected <= self._final_seen | self._left:
            now = time.monotonic()
            wait = min(self._last_request + LINGER_IDLE_SECONDS, cap) - now
            if wait <= 0:
                break
            self._activity.clear()
            try:
                await asyncio.wait_for(self._activity.wait(), timeout=wait)
            except asyncio.TimeoutError:
                break
        missing = sorted(expected - self._final_seen - self._left)
        if missing:
            log.info("leaving without final requests from some peers", extra={"fields": {"missing": missing}})

    # -- timing --------------------------------------------------------------------------------
    class Timer:
        """Accumulates one step's seconds per activity."""

        def __init__(self) -> None:
            self.split = {"communication": 0.0, "aggregation": 0.0, "computation": 0.0}
            self._t = time.perf_counter()

        def lap(self, activity: str) -> None:
            now = time.perf_counter()
            self.split[activity] += now - self._t
            self._t = now


__all__ = ["Contribution", "ProtocolNode", "GRADIENT", "MODEL", "PROPOSAL"]
