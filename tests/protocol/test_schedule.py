"""The worst-case schedule of evaluation runs: simulated attackers are asked first and lead every
quorum, an attacker that goes quiet is waited for once, and jobs without attackers are unchanged.
Real gRPC servers on loopback; the attackers answer *last* here, so only the schedule can put
them in the quorum."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import numpy as np

from garfield.proto import GRADIENT, TensorRequest
from garfield.protocol.base import simulated_attackers
from garfield.protocol.quorum import CallPolicy, PeerOrder, gather
from garfield.spec.validation import validate_manifest
from garfield.transport import Peer, start_server, tensor_request
from garfield.wire import Expect, encode

from support.manifests import job

D = 1000


class Scripted:
    """A node service that answers after an event (or never); counts calls and cancellations."""

    def __init__(self, name: str, behaviour: Callable[[TensorRequest], Awaitable[list[bytes]]]) -> None:
        self.name, self.behaviour = name, behaviour
        self.calls = self.cancelled = 0
        self.served = asyncio.Event()  # set on each answer; the test clears it

    async def serve(self, request: TensorRequest) -> list[bytes]:
        self.calls += 1
        try:
            messages = await self.behaviour(request)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.served.set()
        return messages

    def status_json(self) -> str:
        return "{}"

    def count_rejected(self, reason: str, detail: str) -> None:
        pass


def replies_after(name: str, gate: asyncio.Event | None = None) -> Callable[[TensorRequest], Awaitable[list[bytes]]]:
    messages = encode(np.full(D, float(name[-1]), dtype=np.float32), kind=GRADIENT, step=0, sender=name)

    async def behaviour(request: TensorRequest) -> list[bytes]:
        if gate is not None:
            await gate.wait()
        return messages

    return behaviour


def expect_for(peer: Peer) -> Expect:
    return Expect(kind=GRADIENT, sender=peer.name, dtype="float32", shape=(D,), min_step=0, max_step=10)


async def serve_all(sources: list[Scripted]) -> tuple[list, list[Peer]]:
    servers, peers = [], []
    for source in sources:
        server, port = await start_server(source, "127.0.0.1:0", D * 4)
        servers.append(server)
        peers.append(Peer(source.name, f"127.0.0.1:{port}", D * 4))
    return servers, peers


async def close(servers: list, peers: list[Peer]) -> None:
    for peer in peers:
        await peer.close()
    for server in servers:
        await server.stop(None)


def test_a_slow_attacker_leads_every_quorum_hedged_or_not() -> None:
    async def main() -> None:
        honest_done = asyncio.Event()  # the attacker answers only once the honest peers have answered
        honest = [Scripted(f"worker-{i}", replies_after(f"worker-{i}")) for i in range(4)]
        attacker = Scripted("worker-4", replies_after("worker-4", honest_done))
        servers, peers = await serve_all(honest + [attacker])
        policy = CallPolicy(rpc_seconds=60, give_up_seconds=60)
        request = tensor_request(GRADIENT, 0, "server-0")

        control = await gather(peers, 3, request, expect_for, policy, lambda p, e: None, PeerOrder())
        assert "worker-4" not in {r.sender for r in control}  # arrival order alone leaves it out

        order = PeerOrder(first=["worker-4"])
        for _ in range(3):  # the first round asks everyone; later ones ask the preferred peers only
            for s in honest:
                s.served.clear()
            round_task = asyncio.create_task(gather(peers, 3, request, expect_for, policy, lambda p, e: None, order))
            # The attacker answers only after q - 1 = 2 honest peers have: the slowest reply.
            served = [asyncio.create_task(s.served.wait()) for s in honest]
            while sum(t.done() for t in served) < 2:
                await asyncio.wait(served, return_when=asyncio.FIRST_COMPLETED)
            for t in served:
                t.cancel()
            honest_done.set()
            replies = await round_task
            honest_done.clear()
            assert replies[0].sender == "worker-4" and len(replies) == 3
        assert attacker.calls == 1 + 3  # control round + one call per scheduled round
        await close(servers, peers)

    asyncio.run(main())


def test_an_attacker_that_goes_quiet_is_waited_for_once_then_left_out() -> None:
    async def main() -> None:
        honest = [Scripted(f"worker-{i}", replies_after(f"worker-{i}")) for i in range(4)]
        quiet = Scripted("worker-4", replies_after("worker-4", asyncio.Event()))  # never set: never answers
        servers, peers = await serve_all(honest + [quiet])
        policy = CallPolicy(rpc_seconds=1.0, give_up_seconds=60)  # rpc_seconds: the patience
        order = PeerOrder(first=["worker-4"])
        request = tensor_request(GRADIENT, 0, "server-0")
        replies = await gather(peers, 3, request, expect_for, policy, lambda p, e: None, order)
        assert "worker-4" not in {r.sender for r in replies} and len(replies) == 3
        assert order.first == frozenset()  # lost: not waited for again
        while quiet.cancelled < 1:
            await asyncio.sleep(0.01)  # its outstanding call is cancelled once the quorum is taken
        await close(servers, peers)

    asyncio.run(main())


def _spec(attack: dict) -> object:
    doc = job("s", framework="pytorch", servers=4, server_f=1, server_gar=None, workers=7, worker_f=2, gar=None,
              training={"steps": 1}, attack=attack)
    return validate_manifest(doc).spec


def test_attackers_are_the_highest_indices_and_silent_ones_are_not_scheduled() -> None:
    spec = _spec({"workers": {"count": 2, "name": "signflip"}, "servers": {"count": 1, "name": "reversed"}})
    assert simulated_attackers(spec, "server-0") == {"worker-5", "worker-6", "server-3"}
    assert simulated_attackers(spec, "server-3") == {"worker-5", "worker-6"}  # never itself
    quiet = _spec({"workers": {"count": 2, "name": "crash"}, "servers": {"count": 1, "name": "silent"}})
    assert simulated_attackers(quiet, "server-0") == frozenset()
