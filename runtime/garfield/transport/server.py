"""The gRPC side of a node: streams its published tensors, answers Status.

The service is registered with a generic handler whose responses are raw bytes: a node encodes
its gradient or model once per step (:func:`garfield.wire.encode`) and every caller receives those
same bytes, with no per-call serialisation. Requests are parsed here so that malformed ones are
counted, not just refused by the framework.
"""

from __future__ import annotations

from typing import AsyncIterator, Awaitable, Callable, Protocol

import grpc
import grpc.aio

from garfield.proto import SERVICE, StatusReply, StatusRequest, TensorRequest
from garfield.transport.channels import server_options


class RequestRejected(Exception):
    """A request that must not be served; `reason` is the rejection metric's label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class TensorSource(Protocol):
    async def serve(self, request: TensorRequest) -> list[bytes]:
        """The serialized chunks answering `request` (may wait for the step; raises RequestRejected)."""

    def status_json(self) -> str: ...

    def count_rejected(self, reason: str, detail: str) -> None: ...


def _handlers(source: TensorSource) -> grpc.GenericRpcHandler:
    async def answer(raw: bytes, context: grpc.aio.ServicerContext) -> list[bytes]:
        try:
            request = TensorRequest.FromString(raw)
        except Exception:
            source.count_rejected("decode", "undecodable request")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "undecodable TensorRequest")
        try:
            return await source.serve(request)
        except RequestRejected as exc:
            source.count_rejected(exc.reason, str(exc))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise AssertionError("unreachable")  # pragma: no cover - abort raises

    async def get_tensor(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for message in await answer(raw, context):
            yield message

    async def get_tensor_whole(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        messages = await answer(raw, context)
        if len(messages) != 1:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"the tensor takes {len(messages)} chunks: call GetTensor")
        return messages[0]

    async def status(request: StatusRequest, context: grpc.aio.ServicerContext) -> StatusReply:
        return StatusReply(json=source.status_json())

    return grpc.method_handlers_generic_handler(SERVICE, {
        "GetTensor": grpc.unary_stream_rpc_method_handler(get_tensor, request_deserializer=None, response_serializer=None),
        "GetTensorWhole": grpc.unary_unary_rpc_method_handler(get_tensor_whole, request_deserializer=None,
                                                              response_serializer=None),
        "Status": grpc.unary_unary_rpc_method_handler(status, request_deserializer=StatusRequest.FromString,
                                                      response_serializer=StatusReply.SerializeToString),
    })


async def start_server(source: TensorSource, listen: str, tensor_bytes: int) -> tuple[grpc.aio.Server, int]:
    """Bind `listen` ("host:port"; port 0 picks a free one) and start serving. Returns the server and its port."""
    server = grpc.aio.server(options=server_options(tensor_bytes))
    server.add_generic_rpc_handlers((_handlers(source),))
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot bind gRPC address {listen!r} (in use?)")
    await server.start()
    return server, port


ServeFn = Callable[[TensorRequest], Awaitable[list[bytes]]]
