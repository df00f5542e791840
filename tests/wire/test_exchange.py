"""The Exchange stream over real gRPC on loopback: numbered requests, cancel, supersede, refusals,
undecodable requests, flow control against a flooding peer, reopening after a peer restart.

Server-side effects are read from the server's ExchangeStats and from the scripted source; waits
are on conditions with generous bounds, never on fixed sleeps."""

from __future__ import annotations

import asyncio
import socket
from typing import Awaitable, Callable

import grpc
import numpy as np
import pytest

from garfield.proto import EXCHANGE, GET_TENSOR, GRADIENT, PROPOSAL, SERVICE, ExchangeReply, ExchangeRequest, TensorRequest
from garfield.transport import Peer, RequestRejected, Unreachable, start_server, tensor_request
from garfield.transport.client import READ_AHEAD, _Stream
from garfield.transport.server import ExchangeStats, answer_header
from garfield.wire import Expect, Rejected, encode

D = 300_000  # 1.2 MB: one chunk
BOUND = 30.0  # seconds: generous bound on every wait for a condition


def vector(seed: int, d: int = D) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(d).astype(np.float32)


class Source:
    """Answers GRADIENT and PROPOSAL of step s with vector(s), encoded once per (kind, step); steps
    in `silent` are never answered, steps above `max_step` are refused. Records what happened."""

    def __init__(self, name: str = "worker-0", d: int = D, chunk_bytes: int = 4 << 20, max_step: int = 100) -> None:
        self.name, self.d, self.chunk_bytes, self.max_step = name, d, chunk_bytes, max_step
        self.silent: set[int] = set()
        self.gates: dict[int, asyncio.Event] = {}  # step -> answered once set
        self.encoded: dict[tuple[int, int], list[bytes]] = {}
        self.calls = 0
        self.cancelled = 0
        self.rejected: list[str] = []

    def messages(self, kind: int, step: int) -> list[bytes]:
        if (kind, step) not in self.encoded:
            self.encoded[kind, step] = encode(vector(step, self.d), kind=kind, step=step, sender=self.name,
                                              chunk_bytes=self.chunk_bytes)
        return self.encoded[kind, step]

    async def serve(self, request: TensorRequest) -> list[bytes]:
        self.calls += 1
        if request.step > self.max_step:
            raise RequestRejected("step", f"step {request.step} beyond {self.max_step}")
        try:
            if request.step in self.silent:
                await asyncio.Event().wait()
            if request.step in self.gates:
                await self.gates[request.step].wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return self.messages(request.kind, request.step)

    def status_json(self) -> str:
        return "{}"

    def count_rejected(self, reason: str, detail: str) -> None:
        self.rejected.append(reason)


def expect(step: int, kind: int = GRADIENT, d: int = D, sender: str = "worker-0") -> Expect:
    return Expect(kind=kind, sender=sender, dtype="float32", shape=(d,), min_step=step, max_step=10**6)


async def until(condition: Callable[[], bool], bound: float = BOUND) -> bool:
    """Wait for `condition` (checked every 10 ms) at most `bound` seconds; its final value."""
    loop = asyncio.get_running_loop()
    end = loop.time() + bound
    while not condition() and loop.time() < end:
        await asyncio.sleep(0.01)
    return condition()


async def serve(source: Source, listen: str = "127.0.0.1:0") -> tuple[grpc.aio.Server, int, ExchangeStats]:
    stats = ExchangeStats()
    server, port = await start_server(source, listen, source.d * 4, stats)
    return server, port, stats


def fetch_message(request_id: int, step: int, kind: int = GRADIENT) -> bytes:
    return ExchangeRequest(id=request_id, fetch=TensorRequest(kind=kind, step=step, requester="t")).SerializeToString()


def cancel_message(request_id: int) -> bytes:
    return ExchangeRequest(id=request_id, cancel={}).SerializeToString()


class RawStream:
    """An Exchange call driven message by message, as a client of another implementation would."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}",
                                                 options=[("grpc.max_receive_message_length", 8 << 20)])
        self.call = self.channel.stream_stream(EXCHANGE, request_serializer=None, response_deserializer=None)()

    async def send(self, message: bytes) -> None:
        await self.call.write(message)

    async def read(self) -> bytes:
        raw = await asyncio.wait_for(self.call.read(), BOUND)
        assert raw is not grpc.aio.EOF
        return raw

    async def header(self) -> ExchangeReply:
        raw = await self.read()
        assert raw[:2] == b"\x80\x01", "an answer starts with its header"
        return ExchangeReply.FromString(raw)

    async def answer(self) -> tuple[ExchangeReply, list[bytes]]:
        header = await self.header()
        return header, [await self.read() for _ in range(header.chunks)]

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close(grace=None)


def test_one_stream_carries_many_numbered_fetches() -> None:
    async def main() -> None:
        source = Source()
        server, port, stats = await serve(source)
        peer = Peer("worker-0", f"127.0.0.1:{port}", D * 4)
        for step in range(12):
            got = await peer.fetch(tensor_request(GRADIENT, step, "t"), expect(step), timeout=BOUND)
            assert got.step == step and got.array.tobytes() == vector(step).tobytes()
        assert stats.streams_opened == 1 and stats.requests == 12
        assert stats.cancelled == stats.superseded == 0
        await peer.close()
        await server.stop(None)

    asyncio.run(main())


def test_answers_carry_the_request_id_and_the_shared_chunk_bytes() -> None:
    async def main() -> None:
        source = Source(d=1_000_000, chunk_bytes=1 << 20)  # 4 chunks
        server, port, stats = await serve(source)
        raw = RawStream(port)
        for request_id, step in ((41, 3), (0, 4), (7, 3)):  # any ids, in any order, 0 included
            await raw.send(fetch_message(request_id, step))
            header, chunks = await raw.answer()
            assert header.id == request_id and header.chunks == 4
            # exactly the bytes the source encoded once, shared by every caller: nothing re-encoded
            assert chunks == source.messages(GRADIENT, step)
        assert stats.streams_opened == 1 and stats.requests == 3 and stats.messages == 12
        # a client that half-closes still gets the pending answer, then the stream ends cleanly
        await raw.send(fetch_message(8, 5))
        await raw.call.done_writing()
        header, chunks = await raw.answer()
        assert header.id == 8 and chunks == source.messages(GRADIENT, 5)
        assert await asyncio.wait_for(raw.call.read(), BOUND) is grpc.aio.EOF
        assert await raw.call.code() == grpc.StatusCode.OK
        await raw.close()
        await server.stop(None)

    asyncio.run(main())


def test_a_fetch_past_its_deadline_cancels_the_request_and_the_stream_goes_on() -> None:
    async def main() -> None:
        source = Source()
        source.silent = {1}
        server, port, stats = await serve(source)
        peer = Peer("worker-0", f"127.0.0.1:{port}", D * 4)
        with pytest.raises(Unreachable) as info:
            await peer.fetch(tensor_request(GRADIENT, 1, "t"), expect(1), timeout=0.5)
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert await until(lambda: source.cancelled == 1), "the server did not stop serving the withdrawn request"
        assert stats.cancelled == 1
        got = await peer.fetch(tensor_request(GRADIENT, 0, "t"), expect(0), timeout=BOUND)
        assert got.array.tobytes() == vector(0).tobytes()
        assert stats.streams_opened == 1
        await peer.close()
        await server.stop(None)

    asyncio.run(main())


def test_a_cancelled_fetch_withdraws_its_request() -> None:
    async def main() -> None:
        source = Source()
        source.silent = {1}
        server, port, stats = await serve(source)
        peer = Peer("worker-0", f"127.0.0.1:{port}", D * 4)
        task = asyncio.create_task(peer.fetch(tensor_request(GRADIENT, 1, "t"), expect(1), timeout=BOUND))
        assert await until(lambda: source.calls == 1)
        task.cancel()  # what the quorum does to the calls it no longer needs
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await until(lambda: stats.cancelled == 1 and source.cancelled == 1)
        got = await peer.fetch(tensor_request(GRADIENT, 2, "t"), expect(2), timeout=BOUND)
        assert got.step == 2 and stats.streams_opened == 1
        await peer.close()
        await server.stop(None)

    asyncio.run(main())


@pytest.mark.parametrize("withdraw", ["cancel", "supersede"])
def test_withdrawing_an_answer_in_progress_stops_the_server_sending_it(withdraw: str) -> None:
    async def main() -> None:
        # 64 MiB in 256 chunks: far more than HTTP/2 windows and socket buffers hold while the
        # client reads nothing, so the server is mid-answer when the withdrawal reaches it.
        d, chunk = 16 << 20, 256 << 10
        source = Source(d=d, chunk_bytes=chunk)
        total = len(source.messages(GRADIENT, 0))
        small = Source(d=1000)
        source.encoded[GRADIENT, 1] = small.messages(GRADIENT, 1)  # a one-chunk answer for step 1
        server, port, stats = await serve(source)
        raw = RawStream(port)
        await raw.send(fetch_message(1, 0))
        header = await raw.header()
        assert header.id == 1 and header.chunks == total
        first = await raw.read()
        if withdraw == "cancel":
            await raw.send(cancel_message(1))
            assert await until(lambda: stats.cancelled == 1)
        await raw.send(fetch_message(2, 1))
        late = 1
        while True:  # what the server had already written for request 1, then the answer to 2
            message = await raw.read()
            if message[:2] == b"\x80\x01":
                break
            late += 1
        reply = ExchangeReply.FromString(message)
        assert reply.id == 2 and reply.chunks == 1
        assert await raw.read() == small.messages(GRADIENT, 1)[0]
        assert first == source.messages(GRADIENT, 0)[0]
        assert late < total, (late, total)
        assert await until(lambda: stats.messages == late + 1), (late, stats)  # all it wrote, we read
        assert (stats.cancelled, stats.superseded) == ((1, 0) if withdraw == "cancel" else (0, 1))
        await raw.close()
        await server.stop(None)

    asyncio.run(main())


def test_a_new_request_supersedes_the_pending_one() -> None:
    async def main() -> None:
        source = Source()
        source.silent = {5}
        server, port, stats = await serve(source)
        raw = RawStream(port)
        await raw.send(fetch_message(1, 5))
        assert await until(lambda: source.calls == 1)
        await raw.send(fetch_message(2, 0))
        header, chunks = await raw.answer()
        assert header.id == 2 and chunks == source.messages(GRADIENT, 0)
        assert await until(lambda: source.cancelled == 1), "the superseded request is still being served"
        assert stats.superseded == 1 and stats.cancelled == 0
        await raw.send(cancel_message(1))  # withdrawing an old request changes nothing
        await raw.send(fetch_message(3, 1))
        header, chunks = await raw.answer()
        assert header.id == 3 and chunks == source.messages(GRADIENT, 1)
        assert stats.cancelled == 0 and stats.streams_opened == 1
        await raw.close()
        await server.stop(None)

    asyncio.run(main())


def test_a_refused_request_gets_an_error_reply_and_the_stream_stays_usable() -> None:
    async def main() -> None:
        source = Source(max_step=10)
        server, port, stats = await serve(source)
        peer = Peer("worker-0", f"127.0.0.1:{port}", D * 4)
        with pytest.raises(Rejected) as info:
            await peer.fetch(tensor_request(GRADIENT, 11, "t"), expect(11), timeout=BOUND)
        assert info.value.reason == "transport" and "step" in info.value.detail
        assert source.rejected == ["step"] and stats.error_replies == 1
        got = await peer.fetch(tensor_request(GRADIENT, 3, "t"), expect(3), timeout=BOUND)
        assert got.array.tobytes() == vector(3).tobytes()
        assert stats.streams_opened == 1
        # the same on the wire: the error reply names the request and the reason
        raw = RawStream(port)
        await raw.send(fetch_message(9, 12))
        header = await raw.header()
        assert header.id == 9 and header.error.reason == "step" and header.chunks == 0
        await raw.send(fetch_message(10, 2))
        header, chunks = await raw.answer()
        assert header.id == 10 and chunks == source.messages(GRADIENT, 2)
        await raw.close()
        await peer.close()
        await server.stop(None)

    asyncio.run(main())


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff garbage", b"\x08\x05"], ids=["not-protobuf", "no-body"])
def test_an_undecodable_request_closes_the_stream_with_invalid_argument(garbage: bytes) -> None:
    async def main() -> None:
        source = Source()
        server, port, stats = await serve(source)
        raw = RawStream(port)
        await raw.send(fetch_message(1, 0))
        await raw.answer()
        await raw.send(garbage)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while True:
                if await asyncio.wait_for(raw.call.read(), BOUND) is grpc.aio.EOF:
                    break
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert source.rejected == ["decode"]
        # the node still answers: a Peer's stream is a new one
        peer = Peer("worker-0", f"127.0.0.1:{port}", D * 4)
        assert (await peer.fetch(tensor_request(GRADIENT, 0, "t"), expect(0), timeout=BOUND)).step == 0
        assert stats.streams_opened == 2
        await raw.close()
        await peer.close()
        await server.stop(None)

    asyncio.run(main())


class Flooder:
    """A hostile node: answers the first request with a header announcing endless chunks and
    writes chunks for as long as its writes complete."""

    def __init__(self, chunk: bytes) -> None:
        self.chunk = chunk
        self.sent = 0

    def handler(self) -> grpc.GenericRpcHandler:
        async def exchange(requests, context: grpc.aio.ServicerContext) -> None:
            request = ExchangeRequest.FromString(await context.read())
            await context.write(answer_header(request.id, 2**62))
            while True:
                await context.write(self.chunk)
                self.sent += 1

        return grpc.method_handlers_generic_handler(SERVICE, {
            "Exchange": grpc.stream_stream_rpc_method_handler(exchange, request_deserializer=None,
                                                              response_serializer=None)})


def test_a_flooding_peer_is_held_back_by_the_bounded_read_ahead() -> None:
    async def main() -> None:
        d = 1 << 20  # 4 MiB: four 1 MiB chunks
        chunks = encode(vector(0, d), kind=GRADIENT, step=0, sender="worker-0", chunk_bytes=1 << 20)
        flooder = Flooder(chunks[0])  # the same first chunk, again and again
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((flooder.handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        peer = Peer("worker-0", f"127.0.0.1:{port}", d * 4)
        with pytest.raises(Rejected) as info:  # the second copy is a chunk out of place
            await peer.fetch(tensor_request(GRADIENT, 0, "t"), expect(0, d=d), timeout=BOUND)
        assert info.value.reason == "truncated"
        stream: _Stream = peer._streams[GRADIENT]
        # The flood goes on; nobody consumes: the reader stops at READ_AHEAD messages, and what it
        # took off the wire is those plus the one in hand. The rest stays with the sender, which
        # HTTP/2 flow control stops.
        assert await until(stream.inbox.full), "the reader did not stop at its bound"
        assert stream.inbox.maxsize == READ_AHEAD
        assert stream.received - stream.consumed <= READ_AHEAD + 1, (stream.received, stream.consumed)
        assert not stream.reader.done() and not stream.broken
        assert flooder.sent >= READ_AHEAD  # it did flood
        # The next fetch skips the flood (the withdrawn answer's chunks) until its deadline.
        with pytest.raises(Unreachable) as later:
            await peer.fetch(tensor_request(GRADIENT, 0, "t"), expect(0, d=d), timeout=1.0)
        assert later.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert stream.inbox.qsize() <= READ_AHEAD
        await peer.close()
        await server.stop(None)

    asyncio.run(main())


def test_a_broken_stream_is_reopened_after_the_peer_restarts() -> None:
    async def main() -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        first = Source()
        first.silent = {7}
        server, _, stats = await serve(first, f"127.0.0.1:{port}")
        peer = Peer("worker-0", f"127.0.0.1:{port}", D * 4)
        assert (await peer.fetch(tensor_request(GRADIENT, 0, "t"), expect(0), timeout=BOUND)).step == 0
        waiting = asyncio.create_task(peer.fetch(tensor_request(GRADIENT, 7, "t"), expect(7), timeout=BOUND))
        assert await until(lambda: first.calls == 2)
        stream = peer._streams[GRADIENT]
        await server.stop(None)  # the peer goes away in the middle of a fetch
        with pytest.raises(Unreachable) as info:  # worth a retry, not a rejection of the peer
            await waiting
        assert info.value.code != grpc.StatusCode.DEADLINE_EXCEEDED, "the broken stream was not noticed"
        assert stream.broken
        second = Source()
        server, _, stats2 = await serve(second, f"127.0.0.1:{port}")  # restarted on the same port
        got = await peer.fetch(tensor_request(GRADIENT, 1, "t"), expect(1), timeout=BOUND)
        assert got.array.tobytes() == vector(1).tobytes()
        assert peer._streams[GRADIENT] is not stream
        assert stats.streams_opened == 1 and stats2.streams_opened == 1
        await peer.close()
        await server.stop(None)

    asyncio.run(main())


def test_overlapping_fetches_from_one_peer() -> None:
    async def main() -> None:
        source = Source()
        source.gates = {4: asyncio.Event()}
        server, port, stats = await serve(source)
        peer = Peer("worker-0", f"127.0.0.1:{port}", D * 4)

        def fetch(kind: int, step: int) -> Awaitable:
            return peer.fetch(tensor_request(kind, step, "t"), expect(step, kind), timeout=BOUND)

        # Different kinds travel on streams of their own: the PROPOSAL answer does not wait for
        # the GRADIENT one, nor does it supersede it.
        gradient = asyncio.create_task(fetch(GRADIENT, 4))
        assert await until(lambda: source.calls == 1)
        proposal = await fetch(PROPOSAL, 2)
        assert proposal.step == 2 and not gradient.done()
        # The same kind: the second fetch waits for the first, nothing is superseded.
        second = asyncio.create_task(fetch(GRADIENT, 3))
        source.gates[4].set()
        got = await gradient
        assert got.step == 4 and got.array.tobytes() == vector(4).tobytes()
        assert (await second).step == 3
        assert stats.streams_opened == 2 and stats.superseded == 0 and stats.cancelled == 0
        await peer.close()
        await server.stop(None)

    asyncio.run(main())


def test_get_tensor_still_answers_one_off_probes() -> None:
    async def main() -> None:
        source = Source()
        server, port, stats = await serve(source)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            probe = channel.unary_stream(GET_TENSOR, request_serializer=None, response_deserializer=None)
            got = [m async for m in probe(tensor_request(GRADIENT, 2, "probe"), timeout=BOUND)]
        assert got == source.messages(GRADIENT, 2) and stats.streams_opened == 0
        await server.stop(None)

    asyncio.run(main())


def test_streams_beyond_the_cap_are_refused_and_counted_and_a_closed_one_frees_its_place() -> None:
    """A client that opens Exchange streams and never reads them makes each hold an answer in flight;
    the server keeps at most `max_streams` open."""

    async def main() -> None:
        source = Source(d=1000)
        stats = ExchangeStats()
        server, port = await start_server(source, "127.0.0.1:0", source.d * 4, stats, max_streams=3)
        streams = [RawStream(port) for _ in range(3)]
        for i, stream in enumerate(streams):
            await stream.send(fetch_message(1, i))
            header, chunks = await stream.answer()
            assert header.id == 1 and chunks
        extra = RawStream(port)
        with pytest.raises(grpc.aio.AioRpcError):
            await extra.send(fetch_message(1, 0))
            await extra.read()
        # The call's status is the server's refusal. (The exception itself may be the client's own
        # failed write, INTERNAL "Failed execute_batch", when the refusal closed the stream first.)
        assert await asyncio.wait_for(extra.call.code(), BOUND) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert source.rejected == ["streams"] and stats.streams_open == 3
        await extra.close()
        await streams.pop().close()
        assert await until(lambda: stats.streams_open == 2)
        again = RawStream(port)
        await again.send(fetch_message(2, 5))
        assert (await again.answer())[0].id == 2
        for stream in [*streams, again]:
            await stream.close()
        await server.stop(None)

    asyncio.run(main())
