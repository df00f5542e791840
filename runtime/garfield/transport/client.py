"""Fetching one tensor from one peer: a deadline per fetch, validation per chunk.

Tensor traffic to a peer runs on long-lived Exchange streams, one per kind of tensor asked for,
instead of one call per fetch (a call costs far more CPU in grpcio than a message on an open
stream). Each answer is a header (request id, chunk count) followed by the bare chunks, which
the Assembler validates as they come; chunks of an answer that was withdrawn are skipped.

A stream carries one fetch at a time (a per-kind lock): fetches of one kind from one peer never
overlap in the protocol (a node's collects run one after another; only a fetch the quorum
cancelled may still be unwinding when the next starts), and concurrent callers simply queue. So
the server-side rule "a new request supersedes the pending one" never drops an answer somebody
still waits for. Different kinds get different streams, so e.g. a GRADIENT pull and a PROPOSAL
pull from the same peer may overlap without interfering.

Errors split in two: :class:`~garfield.wire.Rejected` (the peer answered something unusable: the
reply is dropped and counted, the peer is not asked again for this step) and :class:`Unreachable`
(no answer in time, connection refused, peer restarting: worth another try with backoff). A
stream that broke is replaced by a fresh one at the next fetch.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Protocol

import grpc
import grpc.aio

from garfield.proto import EXCHANGE, STATUS, ExchangeReply, StatusReply, StatusRequest, TensorRequest
from garfield.security.channels import channel_credentials, is_handshake_failure, target_options
from garfield.security.files import TlsMaterial
from garfield.transport.channels import channel_options
from garfield.transport.server import ID_TAG, varint
from garfield.wire.codec import Assembler, Expect, Received, Rejected

# Reply messages a stream's reader takes off the wire ahead of the fetch consuming them. Beyond
# this the reader stops reading, so HTTP/2 flow control holds a peer that floods the stream.
READ_AHEAD = 4


class Unreachable(Exception):
    """The call got no usable answer for a reason that may pass (deadline, unavailable...)."""

    def __init__(self, code: grpc.StatusCode | None, detail: str) -> None:
        super().__init__(f"{code.name if code else 'error'}: {detail}")
        self.code = code


def _fetch_message(request_id: int, request: bytes) -> bytes:
    """ExchangeRequest{id, fetch: request}, around the already serialized TensorRequest."""
    return b"\x08" + varint(request_id) + b"\x12" + varint(len(request)) + request


def _cancel_message(request_id: int) -> bytes:
    """ExchangeRequest{id, cancel: {}}."""
    return b"\x08" + varint(request_id) + b"\x1a\x00"


_HEADER_TAG = ID_TAG  # an ExchangeReply header starts with its id field; a TensorChunk never does


class _Outbox:
    """The request iterator grpc consumes: endless, it waits for our next message. A plain async
    iterator, not an async generator, so there is nothing to finalise when the call is cancelled
    mid-wait (an async generator's aclose() then races grpc's own consumer task)."""

    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self.queue = queue

    def __aiter__(self) -> _Outbox:
        return self

    async def __anext__(self) -> bytes:
        return await self.queue.get()


class _Stream:
    """One Exchange call: requests go through `outbox` (consumed by grpc's own task, so queuing one
    never awaits, not even while a cancelled fetch unwinds), replies come in through one reader
    task and the bounded `inbox`."""

    def __init__(self, open_call: grpc.aio.StreamStreamMultiCallable[bytes, bytes]) -> None:
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()  # our own requests: at most a fetch and its cancel
        self.inbox: asyncio.Queue[bytes | Exception] = asyncio.Queue(maxsize=READ_AHEAD)
        self.next_id = 1
        self.broken = False
        # The answer the stream is in (from its last header): chunks are attributed by order.
        self.answer_id = -1
        self.remaining = 0
        self.received = 0  # messages the reader took off the wire
        self.consumed = 0  # messages fetches took from the inbox
        self.call = open_call(_Outbox(self.outbox), wait_for_ready=True)
        self.reader = asyncio.create_task(self._read(), name="exchange-reader")

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.call.read()
                if not isinstance(raw, bytes):  # grpc.aio.EOF (replies are raw bytes: no deserializer)
                    end: Exception = Unreachable(None, "the peer ended the stream")
                    break
                self.received += 1
                await self.inbox.put(raw)
        except grpc.aio.AioRpcError as exc:
            end = _classify(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever broke the call, the fetch learns it
            end = Unreachable(None, f"{type(exc).__name__}: {exc}")
        self.broken = True  # the next fetch opens a new stream
        await self.inbox.put(end)

    def send(self, message: bytes, supersede: bool = False) -> None:
        """Queue `message`. A new fetch (`supersede`) makes whatever is still unsent obsolete: the
        server would drop it anyway, so while the stream waits for the peer (e.g. still starting)
        retries do not pile up."""
        if supersede:
            while not self.outbox.empty():
                self.outbox.get_nowait()
        self.outbox.put_nowait(message)

    async def take(self) -> bytes:
        item = await self.inbox.get()
        if isinstance(item, Exception):
            raise item  # the stream is over (broken is set): the next fetch opens another
        self.consumed += 1
        return item

    def close(self) -> None:
        """End the call; a fetch still reading this stream learns it at once."""
        self.broken = True
        self.reader.cancel()
        self.call.cancel()
        while not self.inbox.empty():
            self.inbox.get_nowait()
        self.inbox.put_nowait(Unreachable(grpc.StatusCode.CANCELLED, "the stream was closed"))


# How long the probe that asks a failing TLS channel why it failed may take (it does not wait for
# the channel, so it fails at once with the channel's last error).
PROBE_SECONDS = 1.0
PROBE_INTERVAL = 1.0  # and how often, while the channel keeps failing (one count per probe that saw a failed peer check)

IdentityFailure = Callable[["Peer", Rejected], None]


class PeerLike(Protocol):
    """What the protocol needs of a peer: a name, an address, fetch, status, close. A gRPC
    :class:`Peer`, or `garfield simulate`'s in-process one (garfield.transport.inprocess)."""

    name: str
    address: str

    async def fetch(self, request: bytes, expect: Expect, timeout: float) -> Received: ...

    async def status(self, timeout: float = 5.0) -> str: ...

    async def close(self) -> None: ...


class Peer:
    """One remote node: its identity (e.g. "worker-3"), address, channel and Exchange streams.

    With `tls` (this node's own material), the channel is mutual TLS and the handshake checks that
    the peer's certificate, signed by the job's CA, names `tls_name` (the peer's stable name): a
    process holding no key of the job, or another replica's key, on this peer's port is refused.
    Fetches only see such a peer as unreachable (streams wait for a ready channel); a watcher on
    the channel's state tells `on_identity_failure` each time a connection attempt failed the
    peer check, so the refusal is counted like any other rejected message."""

    def __init__(self, name: str, address: str, tensor_bytes: int,
                 tls: TlsMaterial | None = None, tls_name: str | None = None,
                 on_identity_failure: IdentityFailure | None = None) -> None:
        self.name = name
        self.address = address
        self.tls = tls is not None
        self.on_identity_failure = on_identity_failure
        self._watcher: asyncio.Task[None] | None = None
        options = channel_options(tensor_bytes)
        if tls is not None:
            self.channel = grpc.aio.secure_channel(address, channel_credentials(tls),
                                                   options=options + target_options(tls_name or name))
        else:
            self.channel = grpc.aio.insecure_channel(address, options=options)
        # Raw bytes both ways: requests are framed by hand, replies validated by the Assembler.
        self._exchange: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = self.channel.stream_stream(
            EXCHANGE, request_serializer=None, response_deserializer=None)
        self._status = self.channel.unary_unary(STATUS, request_serializer=StatusRequest.SerializeToString,
                                                response_deserializer=StatusReply.FromString)
        self._streams: dict[int, _Stream] = {}  # by kind
        self._locks: dict[int, asyncio.Lock] = {}  # by kind: held for the whole of a fetch
        self._closed = False

    def _stream(self, kind: int) -> _Stream:
        """The open stream for `kind`; a new one when there is none or it broke (peer restarted...)."""
        if self._closed:
            raise RuntimeError(f"the channel to {self.name} is closed")  # a bug of ours, not the peer's
        if self.tls and self.on_identity_failure is not None and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_identity(), name=f"tls-watch-{self.name}")
        stream = self._streams.get(kind)
        if stream is None or stream.broken:
            if stream is not None:
                stream.close()
            stream = self._streams[kind] = _Stream(self._exchange)
        return stream

    async def fetch(self, request: bytes, expect: Expect, timeout: float) -> Received:
        """The peer's tensor, validated against `expect`, within `timeout` seconds.

        `request` is a serialized TensorRequest; it travels as one numbered request on the stream
        of `expect.kind`. An answer not wanted any more (deadline, rejection, the caller cancelled)
        is withdrawn with a cancel, and the stream stays open for the next fetch."""
        try:
            async with asyncio.timeout(timeout):
                async with self._locks.setdefault(expect.kind, asyncio.Lock()):  # one fetch per stream at a time
                    stream = self._stream(expect.kind)
                    request_id = stream.next_id
                    stream.next_id += 1
                    stream.send(_fetch_message(request_id, request), supersede=True)
                    complete = False
                    try:
                        received = await self._receive(stream, request_id, expect)
                        complete = True
                        return received
                    finally:
                        if stream.broken and not self._closed:
                            # Open the replacement now (once per fetch that saw the break, so a
                            # peer that keeps ending streams costs no loop): it is set up by the
                            # time the next fetch comes, which otherwise pays for it and may lose
                            # the race to the quorum.
                            self._stream(expect.kind)
                        elif not complete:
                            stream.send(_cancel_message(request_id))
        except TimeoutError:
            raise Unreachable(grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer within {timeout:g} s") from None

    async def _watch_identity(self) -> None:
        """While the channel is in TRANSIENT_FAILURE, ask it every PROBE_INTERVAL why (one call that
        does not wait for the channel, so it fails at once with the channel's last error), and
        report the failures of the peer check. gRPC keeps a failing channel in TRANSIENT_FAILURE
        while it retries in the background, so there is no state change to wait for between two
        failed attempts. A refused connection (peer down, restarting) is not the peer's fault."""
        assert self.on_identity_failure is not None
        state = self.channel.get_state(try_to_connect=False)
        while not self._closed:
            if state != grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                await self.channel.wait_for_state_change(state)
                state = self.channel.get_state(try_to_connect=False)
                continue
            try:
                await self._status(StatusRequest(), timeout=PROBE_SECONDS, wait_for_ready=False)
            except grpc.aio.AioRpcError as exc:
                if is_handshake_failure(exc.details()):
                    self.on_identity_failure(self, Rejected(
                        "identity", f"{self.name} at {self.address} failed authentication: {exc.details()}"))
            await asyncio.sleep(PROBE_INTERVAL)  # a watchdog's period: gRPC gives no event per failed attempt
            state = self.channel.get_state(try_to_connect=False)

    @staticmethod
    async def _receive(stream: _Stream, request_id: int, expect: Expect) -> Received:
        """Read the stream until the answer to `request_id` is complete; the rest of answers
        withdrawn earlier is skipped on the way."""
        assembler = Assembler(expect)
        while True:
            raw = await stream.take()
            if raw[:2] == _HEADER_TAG:
                try:
                    header = ExchangeReply.FromString(raw)
                except Exception:  # protobuf raises DecodeError, or others on arbitrary bytes
                    raise Rejected("decode", "undecodable answer header") from None
                stream.answer_id, stream.remaining = header.id, header.chunks
                if header.id < request_id:
                    continue  # an answer we withdrew
                if header.id > request_id:
                    raise Rejected("transport", f"answer to request {header.id}, never made (expected {request_id})")
                if header.HasField("error"):
                    stream.remaining = 0
                    raise Rejected("transport", f"request refused: {header.error.reason}: {header.error.detail}")
                if header.chunks == 0:
                    return assembler.finish()  # raises: an empty answer
                continue
            if stream.remaining <= 0:
                raise Rejected("transport", "a chunk outside any answer")
            stream.remaining -= 1
            if stream.answer_id != request_id:
                continue  # the rest of an answer we withdrew
            assembler.feed(raw)
            if stream.remaining == 0:
                return assembler.finish()

    async def status(self, timeout: float = 5.0) -> str:
        reply = await self._status(StatusRequest(), timeout=timeout)
        text: str = reply.json
        return text

    async def close(self) -> None:
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()
        await self.channel.close(grace=None)


def _classify(exc: grpc.aio.AioRpcError) -> Exception:
    """A failed call as a rejection of the peer's answer, or as a reason to try again."""
    code = exc.code()
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Rejected("oversized", exc.details() or "message over the limit")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNIMPLEMENTED,
                grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED):
        return Rejected("transport", f"{code.name}: {exc.details()}")
    return Unreachable(code, exc.details() or "")


def tensor_request(kind: int, step: int, requester: str) -> bytes:
    request: bytes = TensorRequest(kind=kind, step=step, requester=requester).SerializeToString()
    return request
