"""Transport and quorum over real gRPC on loopback: deadlines, cancellation, retries, limits."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

import grpc
import numpy as np
import pytest

from garfield.proto import GRADIENT, TensorRequest
from garfield.protocol.quorum import CallPolicy, QuorumError, adopted_step, gather
from garfield.transport import Peer, Unreachable, start_server, tensor_request
from garfield.wire import Expect, Rejected, encode

D = 1_200_000  # 4.8 MB: two chunks of 4 MiB


class Scripted:
    """A node service whose answers are scripted; records what happened to each call."""

    def __init__(self, name: str, behaviour: Callable[[TensorRequest], Awaitable[list[bytes]]]) -> None:
        self.name = name
        self.behaviour = behaviour
        self.cancelled = 0
        self.calls = 0
        self.rejected: list[str] = []

    async def serve(self, request: TensorRequest) -> list[bytes]:
        self.calls += 1
        try:
            return await self.behaviour(request)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def status_json(self) -> str:
        return '{"role": "test"}'

    def count_rejected(self, reason: str, detail: str) -> None:
        self.rejected.append(reason)


def vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(D).astype(np.float32)


def answer(name: str, seed: int, delay: float = 0.0, step: int = 0) -> Callable[[TensorRequest], Awaitable[list[bytes]]]:
    messages = encode(vector(seed), kind=GRADIENT, step=step, sender=name)

    async def behaviour(request: TensorRequest) -> list[bytes]:
        await asyncio.sleep(delay)
        return messages

    return behaviour


async def never(request: TensorRequest) -> list[bytes]:
    await asyncio.Event().wait()
    return []


def expect_for(peer: Peer, min_step: int = 0) -> Expect:
    return Expect(kind=GRADIENT, sender=peer.name, dtype="float32", shape=(D,), min_step=min_step, max_step=100)


async def serve_all(sources: list[Scripted]) -> tuple[list[grpc.aio.Server], list[Peer]]:
    servers, peers = [], []
    for source in sources:
        server, port = await start_server(source, "127.0.0.1:0", D * 4)
        servers.append(server)
        peers.append(Peer(source.name, f"127.0.0.1:{port}", D * 4))
    return servers, peers


async def close(servers: list[grpc.aio.Server], peers: list[Peer]) -> None:
    for peer in peers:
        await peer.close()
    for server in servers:
        await server.stop(None)


def test_fetch_streams_a_multi_chunk_tensor_bit_exact() -> None:
    async def main() -> None:
        servers, peers = await serve_all([Scripted("worker-0", answer("worker-0", 3))])
        got = await peers[0].fetch(tensor_request(GRADIENT, 0, "t"), expect_for(peers[0]), timeout=10)
        assert got.array.tobytes() == vector(3).tobytes()
        assert await peers[0].status() == '{"role": "test"}'
        await close(servers, peers)

    asyncio.run(main())


def test_quorum_returns_after_q_replies_and_cancels_the_rest() -> None:
    async def main() -> None:
        sources = [Scripted(f"worker-{i}", answer(f"worker-{i}", i, delay=0.05 * i)) for i in range(3)]
        sources += [Scripted(f"worker-{i}", never) for i in range(3, 5)]
        servers, peers = await serve_all(sources)
        policy = CallPolicy(rpc_seconds=30, give_up_seconds=30)
        start = time.monotonic()
        replies = await gather(peers, 3, tensor_request(GRADIENT, 0, "t"), expect_for, policy, lambda p, e: None)
        elapsed = time.monotonic() - start
        assert sorted(r.sender for r in replies) == ["worker-0", "worker-1", "worker-2"]
        assert elapsed < 5  # far below the 30 s deadline of the silent peers' calls
        # The silent peers' calls are cancelled, and the servers see it.
        waited = 0.0
        while sum(s.cancelled for s in sources[3:]) < 2 and waited < 5:
            await asyncio.sleep(0.05)
            waited += 0.05
        assert [s.cancelled for s in sources[3:]] == [1, 1]
        await close(servers, peers)

    asyncio.run(main())


def test_deadline_is_honoured_and_reported_as_unreachable() -> None:
    async def main() -> None:
        servers, peers = await serve_all([Scripted("worker-0", never)])
        start = time.monotonic()
        with pytest.raises(Unreachable) as info:
            await peers[0].fetch(tensor_request(GRADIENT, 0, "t"), expect_for(peers[0]), timeout=0.3)
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.25 < time.monotonic() - start < 3
        await close(servers, peers)

    asyncio.run(main())


def test_invalid_replies_do_not_count_towards_the_quorum() -> None:
    async def main() -> None:
        async def garbage(request: TensorRequest) -> list[bytes]:
            return [b"\x08\x01\x12\xff\xff garbage"]

        async def impostor(request: TensorRequest) -> list[bytes]:
            return encode(vector(9), kind=GRADIENT, step=0, sender="worker-0")  # claims to be worker-0

        sources = [Scripted("worker-0", answer("worker-0", 0, delay=0.2)), Scripted("worker-1", garbage),
                   Scripted("worker-2", impostor), Scripted("worker-3", answer("worker-3", 3, delay=0.2))]
        servers, peers = await serve_all(sources)
        rejected: list[tuple[str, str]] = []
        policy = CallPolicy(rpc_seconds=10, give_up_seconds=10)
        replies = await gather(peers, 2, tensor_request(GRADIENT, 0, "t"), expect_for, policy,
                               lambda p, e: rejected.append((p.name, e.reason)))
        assert sorted(r.sender for r in replies) == ["worker-0", "worker-3"]
        assert sorted(rejected) == [("worker-1", "decode"), ("worker-2", "sender")]
        with pytest.raises(QuorumError, match="can still give"):
            await gather(peers, 3, tensor_request(GRADIENT, 0, "t"), expect_for, policy, lambda p, e: None)
        await close(servers, peers)

    asyncio.run(main())


def test_stale_reply_is_rejected() -> None:
    async def main() -> None:
        servers, peers = await serve_all([Scripted("worker-0", answer("worker-0", 0, step=2))])
        with pytest.raises(Rejected) as info:
            await peers[0].fetch(tensor_request(GRADIENT, 5, "t"), expect_for(peers[0], min_step=5), timeout=5)
        assert info.value.reason == "stale"
        await close(servers, peers)

    asyncio.run(main())


def test_oversized_message_is_refused_by_the_channel_limit() -> None:
    async def main() -> None:
        big = encode(np.ones(D, np.float32), kind=GRADIENT, step=0, sender="worker-0", chunk_bytes=D * 4)

        async def oversized(request: TensorRequest) -> list[bytes]:
            return big

        source = Scripted("worker-0", oversized)
        server = grpc.aio.server(options=[("grpc.max_send_message_length", 64 << 20)])
        from garfield.transport.server import _handlers

        server.add_generic_rpc_handlers((_handlers(source),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        peer = Peer("worker-0", f"127.0.0.1:{port}", D * 4)
        with pytest.raises(Rejected) as info:
            await peer.fetch(tensor_request(GRADIENT, 0, "t"), expect_for(peer), timeout=5)
        assert info.value.reason == "oversized"
        await close([server], [peer])

    asyncio.run(main())


def test_calls_to_a_peer_that_is_still_starting_succeed_once_it_is_up() -> None:
    async def main() -> None:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        peer = Peer("worker-0", f"127.0.0.1:{port}", D * 4)
        policy = CallPolicy(rpc_seconds=5, give_up_seconds=20)
        pending = asyncio.create_task(gather([peer], 1, tensor_request(GRADIENT, 0, "t"), expect_for, policy,
                                             lambda p, e: None))
        await asyncio.sleep(0.5)  # the peer starts late
        assert not pending.done()
        server, _ = await start_server(Scripted("worker-0", answer("worker-0", 1)), f"127.0.0.1:{port}", D * 4)
        replies = await asyncio.wait_for(pending, 10)
        assert replies[0].array.tobytes() == vector(1).tobytes()
        await close([server], [peer])

    asyncio.run(main())


def test_garbage_requests_are_refused_and_counted() -> None:
    async def main() -> None:
        from garfield.proto import GET_TENSOR

        source = Scripted("worker-0", answer("worker-0", 0))
        servers, peers = await serve_all([source])
        raw = peers[0].channel.unary_stream(GET_TENSOR, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in raw(b"\xff\xff\xff garbage", timeout=5):
                pass
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert source.rejected == ["decode"]
        await close(servers, peers)

    asyncio.run(main())


def test_adopted_step_ignores_f_inflated_steps() -> None:
    assert adopted_step([5, 5, 5, 10**9], f=1) == 5
    assert adopted_step([7, 5, 6], f=1) == 6
    assert adopted_step([3], f=0) == 3


def test_preferred_quorum_asks_q_peers_then_hedges_and_demotes() -> None:
    from garfield.protocol.quorum import PeerOrder

    async def main() -> None:
        silent_now = {"flag": False}

        async def sometimes_silent(request: TensorRequest) -> list[bytes]:
            if silent_now["flag"]:
                await asyncio.Event().wait()
            return encode(vector(0), kind=GRADIENT, step=0, sender="worker-0")

        async def garbage(request: TensorRequest) -> list[bytes]:
            return [b"\xff garbage"]

        sources = [Scripted("worker-0", sometimes_silent)]
        # 100 ms apart: the answers arrive in this order even on a loaded machine
        sources += [Scripted(f"worker-{i}", answer(f"worker-{i}", i, delay=0.1 * i)) for i in range(1, 4)]
        sources.append(Scripted("worker-4", garbage))
        servers, peers = await serve_all(sources)
        policy = CallPolicy(rpc_seconds=10, give_up_seconds=10)
        order = PeerOrder()
        request = tensor_request(GRADIENT, 0, "t")
        rejected: list[str] = []

        def ask() -> Awaitable[list]:
            return gather(peers, 3, request, expect_for, policy, lambda p, e: rejected.append(p.name), order)

        first = await ask()  # no history: everyone is asked
        assert [s.calls for s in sources] == [1, 1, 1, 1, 1] and rejected == ["worker-4"]
        assert sorted(r.sender for r in first) == ["worker-0", "worker-1", "worker-2"]
        await ask()  # only the three that answered are asked
        assert [s.calls for s in sources] == [2, 2, 2, 1, 1]
        silent_now["flag"] = True  # a preferred peer goes silent: the hedge asks the rest
        replies = await ask()
        assert sorted(r.sender for r in replies) == ["worker-1", "worker-2", "worker-3"]
        assert sources[3].calls == 2 and sources[4].calls == 2
        await ask()  # the silent peer is now at the back and not asked
        assert sources[0].calls == 3
        await close(servers, peers)

    asyncio.run(main())
