"""The gRPC side of a node: answers Exchange streams (and one-off GetTensor probes), answers Status.

The service is registered with a generic handler whose responses are raw bytes: a node encodes
its gradient or model once per step (:func:`garfield.wire.encode`) and every caller receives those
same chunk bytes, after a small header message (request id, chunk count) of its own: no per-call
serialisation or copy of the payload. Requests are parsed here so that malformed ones are
counted, not just refused by the framework.

One Exchange stream answers one request at a time: a new request supersedes the pending one, a
cancel withdraws it, and either takes effect at the next message boundary (a write in progress is
never interrupted, so the stream stays well-formed).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Protocol

import grpc
import grpc.aio

from garfield.proto import SERVICE, ExchangeReply, ExchangeRequest, RequestError, StatusReply, StatusRequest, TensorRequest
from garfield.security.channels import caller_uri, server_credentials
from garfield.security.files import TlsMaterial
from garfield.transport.channels import server_options

log = logging.getLogger("garfield.transport")


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


class Authority(Protocol):
    """Who may call, and ask for what: the node's decisions, applied by the service under mutual TLS."""

    def authenticate(self, uri: str | None) -> str:
        """The caller's node name from its verified certificate's URI SAN; RequestRejected if none may call."""

    def permit(self, caller: str, request: TensorRequest) -> None:
        """Raise RequestRejected unless `caller` (authenticated) may make `request`."""


@dataclass(frozen=True)
class ServerTls:
    """Mutual TLS for a node's service: its own material and the authority deciding on callers."""

    material: TlsMaterial
    authority: Authority


@dataclass
class ExchangeStats:
    """What a server's Exchange streams did: lets tests (and diagnostics) see the server side."""

    streams_opened: int = 0
    streams_open: int = 0
    requests: int = 0
    cancelled: int = 0  # withdrawn by the client's cancel
    superseded: int = 0  # dropped for a newer request on the same stream
    error_replies: int = 0  # refused (RequestRejected): answered with an error reply
    messages: int = 0  # chunk messages written


def varint(value: int) -> bytes:
    """Protobuf's base-128 varint: for the few bytes of framing written by hand."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


# ExchangeReply field tags: 16 (id, varint), 17 (chunks, varint).
ID_TAG = varint(16 << 3)
_CHUNKS_TAG = varint(17 << 3)


def answer_header(request_id: int, chunks: int) -> bytes:
    """The header of an answer of `chunks` TensorChunk messages. Written by hand so that `id`
    comes first even when it is 0 (protobuf would omit it): that is how a header is told from a chunk."""
    return ID_TAG + varint(request_id) + _CHUNKS_TAG + varint(chunks)


def error_reply(request_id: int, reason: str, detail: str) -> bytes:
    """The answer to a refused request: a header with `error`, no chunks."""
    error: bytes = ExchangeReply(error=RequestError(reason=reason, detail=detail[:1024])).SerializeToString()
    return ID_TAG + varint(request_id) + error


class _Job:
    """The request a stream is answering; compared by identity, so a reused id is still a new job."""

    def __init__(self, request_id: int) -> None:
        self.id = request_id
        self.task: asyncio.Task[None] | None = None
        self.messages: list[bytes] | None = None  # the answer, once serve() returned
        self.error: bytes | None = None  # or the error reply, once it refused


class _ExchangeStream:
    """One Exchange call on the server: a reader task takes requests and starts serving them, this
    coroutine writes answers. The state is one slot (the current job) and a wake-up event, not a
    queue, so a client that sends requests without reading makes the server hold nothing more."""

    def __init__(self, source: TensorSource, stats: ExchangeStats,
                 caller: str | None = None, authority: Authority | None = None) -> None:
        self.source = source
        self.stats = stats
        self.caller = caller  # the authenticated caller (mutual TLS), checked on every request
        self.authority = authority
        self.job: _Job | None = None
        self.wake = asyncio.Event()
        self.closing = False  # the client half-closed: end once the pending answer is written
        self.undecodable = False
        self.failure: BaseException | None = None
        self.requester = ""  # the name the stream's requests carry (its first non-empty one)

    def finish(self) -> None:
        """The node is stopping: end the call once the pending answer is written. (The node cancels
        the requests it can never answer; see `_serve`.)"""
        self.closing = True
        self.wake.set()

    def _drop(self) -> None:
        """Withdraw the current job: its serve() is cancelled, its remaining chunks never written."""
        job, self.job = self.job, None
        if job is not None and job.task is not None and not job.task.done():
            job.task.cancel()

    async def _read(self, requests: AsyncIterator[bytes]) -> None:
        try:
            async for raw in requests:
                try:
                    message = ExchangeRequest.FromString(raw)
                    body = message.WhichOneof("body")
                except Exception:  # protobuf raises DecodeError, or others on arbitrary bytes
                    body = None
                if body is None:
                    self.source.count_rejected("decode", "undecodable ExchangeRequest")
                    self._drop()
                    self.undecodable = True
                    return
                if body == "cancel":
                    if self.job is not None and self.job.id == message.id:
                        self.stats.cancelled += 1
                        self._drop()
                    continue
                if self.job is not None:
                    self.stats.superseded += 1
                self._drop()
                self.stats.requests += 1
                self.requester = self.requester or message.fetch.requester
                job = self.job = _Job(message.id)
                job.task = asyncio.create_task(self._serve(job, message.fetch), name=f"serve-{message.id}")
            self.closing = True
        except asyncio.CancelledError:
            raise
        except Exception:  # the call broke while reading (client gone): end the handler quietly
            self._drop()
            self.closing = True
        finally:
            self.wake.set()

    async def _serve(self, job: _Job, request: TensorRequest) -> None:
        try:
            if self.authority is not None and self.caller is not None:
                self.authority.permit(self.caller, request)
            job.messages = await self.source.serve(request)
        except RequestRejected as exc:
            self.source.count_rejected(exc.reason, str(exc))
            job.error = error_reply(job.id, exc.reason, str(exc))
        except asyncio.CancelledError:
            if self.job is job:  # cancelled by the node (it is stopping), not withdrawn by the client
                self.job = None
                self.wake.set()
            raise
        except Exception as exc:  # a bug in the source: end the stream (UNKNOWN), the client retries
            self.failure = exc
        self.wake.set()

    async def run(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        reader = asyncio.create_task(self._read(requests), name="exchange-reader")
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                if self.undecodable:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "undecodable ExchangeRequest")
                if self.failure is not None:
                    log.warning("exchange stream failed", exc_info=self.failure)
                    await context.abort(grpc.StatusCode.UNKNOWN, f"{type(self.failure).__name__}: {self.failure}")
                job = self.job
                if job is not None and job.error is not None:
                    self.stats.error_replies += 1
                    await context.write(job.error)
                elif job is not None and job.messages is not None:
                    await context.write(answer_header(job.id, len(job.messages)))
                    for chunk in job.messages:
                        if job is not self.job:
                            break  # cancelled or superseded mid-answer: stop at this message boundary
                        await context.write(chunk)  # the shared bytes, as encoded once
                        self.stats.messages += 1
                else:
                    job = None  # nothing ready to write
                if job is not None and job is self.job:
                    self.job = None
                if self.closing and self.job is None:
                    return
        finally:
            reader.cancel()
            self._drop()


class _OpenStreams:
    """The Exchange streams a server is answering, so that stopping can end them in order."""

    def __init__(self) -> None:
        self.streams: set[_ExchangeStream] = set()
        self.closing = False

    def close(self) -> None:
        self.closing = True
        for stream in list(self.streams):
            stream.finish()


_OPEN: dict[int, _OpenStreams] = {}  # id(server) -> its streams (see stop_server)


RequesterLeft = Callable[[str], None]


def _handlers(source: TensorSource, stats: ExchangeStats | None = None,
              open_streams: _OpenStreams | None = None,
              on_requester_left: RequesterLeft | None = None,
              max_streams: int | None = None, authority: Authority | None = None) -> grpc.GenericRpcHandler:
    stats = stats if stats is not None else ExchangeStats()
    registry = open_streams if open_streams is not None else _OpenStreams()

    async def authenticate(context: grpc.aio.ServicerContext[bytes, bytes]) -> str | None:
        """The authenticated caller (None without TLS); a caller no one may be is refused and counted."""
        if authority is None:
            return None
        try:
            return authority.authenticate(caller_uri(context))
        except RequestRejected as exc:
            source.count_rejected(exc.reason, str(exc))
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        raise AssertionError("unreachable")  # pragma: no cover - abort raises

    async def exchange(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        caller = await authenticate(context)
        if max_streams is not None and len(registry.streams) >= max_streams:
            # Each open stream may hold an answer in flight (what flow control has not sent yet):
            # a client opening streams it never reads must not make that unbounded.
            source.count_rejected("streams", f"{max_streams} Exchange streams already open")
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{max_streams} Exchange streams already open")
        stats.streams_opened += 1
        stats.streams_open += 1
        stream = _ExchangeStream(source, stats, caller, authority)
        registry.streams.add(stream)
        if registry.closing:
            stream.finish()
        try:
            await stream.run(requests, context)
        finally:
            registry.streams.discard(stream)
            stats.streams_open -= 1
            if on_requester_left is not None and stream.requester:
                on_requester_left(stream.requester)

    async def answer(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> list[bytes]:
        caller = await authenticate(context)
        try:
            request = TensorRequest.FromString(raw)
        except Exception:
            source.count_rejected("decode", "undecodable request")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "undecodable TensorRequest")
        try:
            if authority is not None and caller is not None:
                authority.permit(caller, request)
            return await source.serve(request)
        except RequestRejected as exc:
            source.count_rejected(exc.reason, str(exc))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise AssertionError("unreachable")  # pragma: no cover - abort raises

    async def get_tensor(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
        for message in await answer(raw, context):
            yield message

    async def status(request: StatusRequest, context: grpc.aio.ServicerContext[bytes, bytes]) -> StatusReply:
        await authenticate(context)  # any replica of the job may read it (the HTTP /status is the operator's)
        return StatusReply(json=source.status_json())

    raw = {"request_deserializer": None, "response_serializer": None}  # bytes as they are, both ways
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Exchange": grpc.stream_stream_rpc_method_handler(exchange, **raw),
        "GetTensor": grpc.unary_stream_rpc_method_handler(get_tensor, **raw),
        "Status": grpc.unary_unary_rpc_method_handler(status, request_deserializer=StatusRequest.FromString,
                                                      response_serializer=StatusReply.SerializeToString),
    })


async def start_server(source: TensorSource, listen: str, tensor_bytes: int,
                       stats: ExchangeStats | None = None,
                       on_requester_left: RequesterLeft | None = None,
                       max_streams: int | None = None, tls: ServerTls | None = None) -> tuple[grpc.aio.Server, int]:
    """Bind `listen` ("host:port"; port 0 picks a free one) and start serving. Returns the server and
    its port. `stats`, when given, counts what the server's Exchange streams do. `on_requester_left(name)`
    is called when an Exchange stream ends, with the requester name its requests carried: the peer
    closed its channel (it is done, or gone), so a node waiting at the end for that peer's last
    request can stop waiting (a broken stream that the peer reopens simply requests again).
    `max_streams`: at most that many Exchange streams open at once; more are refused
    (RESOURCE_EXHAUSTED, counted under reason "streams"). `tls`: serve over mutual TLS only (a client
    without a certificate of the job's CA fails the handshake), each call's caller authenticated and
    each request permitted by `tls.authority`; None: plaintext."""
    server = grpc.aio.server(options=server_options(tensor_bytes))
    open_streams = _OpenStreams()
    authority = tls.authority if tls is not None else None
    server.add_generic_rpc_handlers((_handlers(source, stats, open_streams, on_requester_left, max_streams, authority),))
    if tls is not None:
        port = server.add_secure_port(listen, server_credentials(tls.material))
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot bind gRPC address {listen!r} (in use?)")
    await server.start()
    _OPEN[id(server)] = open_streams
    return server, port


async def stop_server(server: grpc.aio.Server, grace: float) -> None:
    """Stop serving in order: each Exchange stream ends once its pending answer is written (the
    source cancels the requests it can never answer), new calls are refused, and calls still
    running get `grace` seconds before they are cancelled."""
    open_streams = _OPEN.pop(id(server), None)
    if open_streams is not None:
        open_streams.close()
    await server.stop(grace)


ServeFn = Callable[[TensorRequest], Awaitable[list[bytes]]]
