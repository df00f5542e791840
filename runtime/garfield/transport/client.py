"""Fetching one tensor from one peer: a deadline per call, validation per chunk.

Errors split in two: :class:`~garfield.wire.Rejected` (the peer answered something unusable: the
reply is dropped and counted, the peer is not asked again for this step) and :class:`Unreachable`
(no answer in time, connection refused, peer restarting: worth another try with backoff).
"""

from __future__ import annotations

import grpc
import grpc.aio

from garfield.proto import GET_TENSOR, GET_TENSOR_WHOLE, STATUS, StatusReply, StatusRequest, TensorRequest
from garfield.transport.channels import channel_options
from garfield.wire.codec import DEFAULT_CHUNK_BYTES, Assembler, Expect, Received, Rejected


class Unreachable(Exception):
    """The call got no usable answer for a reason that may pass (deadline, unavailable...)."""

    def __init__(self, code: grpc.StatusCode | None, detail: str) -> None:
        super().__init__(f"{code.name if code else 'error'}: {detail}")
        self.code = code


class Peer:
    """One remote node: its identity (e.g. "worker-3"), address and channel."""

    def __init__(self, name: str, address: str, tensor_bytes: int) -> None:
        self.name = name
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=channel_options(tensor_bytes))
        # Raw bytes both ways: requests are serialized once per round, replies validated by the Assembler.
        self._get = self.channel.unary_stream(GET_TENSOR, request_serializer=None, response_deserializer=None)
        self._get_whole = self.channel.unary_unary(GET_TENSOR_WHOLE, request_serializer=None, response_deserializer=None)
        self._status = self.channel.unary_unary(STATUS, request_serializer=StatusRequest.SerializeToString,
                                                response_deserializer=StatusReply.FromString)

    async def fetch(self, request: bytes, expect: Expect, timeout: float) -> Received:
        """The peer's tensor, validated against `expect`, within `timeout` seconds. A tensor that
        fits in one chunk travels as one unary call (cheaper per call), a larger one streams."""
        assembler = Assembler(expect)
        if expect.nbytes <= DEFAULT_CHUNK_BYTES:
            try:
                assembler.feed(await self._get_whole(request, timeout=timeout, wait_for_ready=True))
            except grpc.aio.AioRpcError as exc:
                raise _classify(exc) from None
            return assembler.finish()
        call = self._get(request, timeout=timeout, wait_for_ready=True)
        try:
            async for raw in call:
                assembler.feed(raw)
        except Rejected:
            call.cancel()
            raise
        except grpc.aio.AioRpcError as exc:
            raise _classify(exc) from None
        finally:
            if not call.done():
                call.cancel()
        return assembler.finish()

    async def status(self, timeout: float = 5.0) -> str:
        reply = await self._status(StatusRequest(), timeout=timeout)
        return reply.json

    async def close(self) -> None:
        await self.channel.close(grace=None)


def _classify(exc: grpc.aio.AioRpcError) -> Exception:
    """A failed call as a rejection of the peer's answer, or as a reason to try again."""
    code = exc.code()
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Rejected("oversized", exc.details() or "message over the limit")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNIMPLEMENTED,
                grpc.StatusCode.FAILED_PRECONDITION):
        return Rejected("transport", f"{code.name}: {exc.details()}")
    return Unreachable(code, exc.details() or "")


def tensor_request(kind: int, step: int, requester: str) -> bytes:
    return TensorRequest(kind=kind, step=step, requester=requester).SerializeToString()
