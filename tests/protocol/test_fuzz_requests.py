"""Fuzzing what a client can ask a node: any kind, any step, any requester, in a well-formed
request, and any bytes on an Exchange stream. A node answers, refuses with a reason it counts, or
waits for a step it will reach; it never raises anything else, and one bad stream never stops it
from serving the next client. Derandomized, with a bounded budget."""

from __future__ import annotations

import asyncio

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from garfield.proto import EXCHANGE, MODEL, ExchangeReply, ExchangeRequest, TensorRequest
from garfield.transport import start_server
from garfield.transport.server import RequestRejected
from garfield.wire import Rejected

import harness

DOC = harness.manifest(1, 0, 5, 1, steps=4)
REASONS = set(Rejected.REASONS)

requests = st.builds(
    TensorRequest,
    kind=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    step=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    requester=st.one_of(st.text(max_size=80), st.sampled_from(["server-0", "worker-0", "worker-4", "worker-5", ""])),
)


@settings(derandomize=True, max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(requests, min_size=1, max_size=8))
def test_any_request_is_answered_refused_or_waits_for_a_step_to_come(batch: list[TensorRequest]) -> None:
    async def main() -> None:
        server = harness.build(DOC).by_role("server")[0]
        await server.publish(MODEL, 0, server.adapter.zeros())
        for request in batch:
            task = asyncio.create_task(server.serve(request))
            for _ in range(5):  # serve() answers, refuses or starts waiting without any I/O
                await asyncio.sleep(0)
            if not task.done():  # a valid request for a step not published yet: it waits for it
                assert request.kind == MODEL and 1 <= request.step <= 4, request
                task.cancel()
                continue
            exc = task.exception()
            if exc is not None:
                assert isinstance(exc, RequestRejected) and exc.reason in REASONS, exc
                continue
            assert task.result() and request.kind == MODEL and request.step == 0
        assert set(server._last_seen) <= server.replica_names

    asyncio.run(main())


def _parses(raw: bytes) -> bool:
    """Whether the server reads `raw` as a request (as `_ExchangeStream._read` decides)."""
    try:
        return ExchangeRequest.FromString(raw).WhichOneof("body") is not None
    except Exception:
        return False


@settings(derandomize=True, max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=256), min_size=1, max_size=4))
def test_garbage_on_an_exchange_stream_ends_that_stream_only(garbage: list[bytes]) -> None:
    async def main() -> None:
        node = harness.build(DOC).by_role("server")[0]
        await node.publish(MODEL, 0, node.adapter.zeros())
        server, port = await start_server(node, "127.0.0.1:0", node.tensor_bytes)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            bad = channel.stream_stream(EXCHANGE, request_serializer=None, response_deserializer=None)()
            # The server ends the call at the first undecodable message, possibly while later
            # ones are still being written: such a write fails on the client (and grpc's client
            # then reports INTERNAL for the call locally), which is the outcome under test.
            write_failed = False
            for raw in garbage:
                try:
                    await bad.write(raw)
                except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
                    write_failed = True
                    break
            else:
                try:
                    await bad.done_writing()
                except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
                    write_failed = True
            try:
                async for _ in bad:  # error replies, or an answer when the bytes happen to parse
                    pass
            except grpc.aio.AioRpcError:
                pass
            code = await bad.code()
            if any(not _parses(raw) for raw in garbage):
                assert "decode" in node.state.status()["rejected"]  # the server refused the stream
                allowed = {grpc.StatusCode.INVALID_ARGUMENT} | ({grpc.StatusCode.INTERNAL} if write_failed else set())
                assert code in allowed, (code, await bad.details())
            else:  # every message was a request: each was answered or refused in a reply, the call ends well
                assert code == grpc.StatusCode.OK, (code, await bad.details())
            good = channel.stream_stream(EXCHANGE, request_serializer=None, response_deserializer=None)()
            await good.write(ExchangeRequest(id=1, fetch=TensorRequest(kind=MODEL, step=0, requester="worker-0"))
                             .SerializeToString())
            header = ExchangeReply.FromString(await asyncio.wait_for(good.read(), 30))
            assert header.id == 1 and header.chunks >= 1 and not header.HasField("error")
            good.cancel()
            assert set(node.state.status()["rejected"]) <= REASONS
        finally:
            await channel.close(grace=None)
            await server.stop(None)

    asyncio.run(main())
