"""An in-process network: every node of a job in one event loop, fetches as direct calls.

`garfield simulate` runs the real protocol nodes (quorums, rules, attacks, worker momentum, the
adversary's ordering) with this in place of gRPC: a fetch calls the peer's `serve()` and feeds the
very chunk bytes it returns (encoded once per step, as on the wire) through the same
:class:`~garfield.wire.codec.Assembler`, so every validation a real reply gets still applies.
What is left out is the cost and the failure modes of sockets, processes and TLS: throughput
from a simulation says nothing about a deployment (`bench/throughput.py` measures that).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc

from garfield.proto import TensorRequest
from garfield.transport.client import Unreachable
from garfield.transport.server import RequesterLeft, RequestRejected, TensorSource
from garfield.wire.codec import Assembler, Expect, Received, Rejected


@dataclass
class _Service:
    """One node's service in the network: its source and the calls it is answering."""

    source: TensorSource
    on_requester_left: RequesterLeft | None
    calls: set[asyncio.Task[Any]] = field(default_factory=set)


class InProcessNetwork:
    """Services by address. A node "listens" by registering and "stops" by leaving: new calls find
    nobody, calls already made are still answered, as a stopping gRPC server writes its pending
    answers (the node itself cancels those it can never answer, see ProtocolNode.stop; the caller
    then sees the peer stop serving)."""

    def __init__(self) -> None:
        self.services: dict[str, _Service] = {}

    def listen(self, source: TensorSource, address: str, on_requester_left: RequesterLeft | None = None) -> None:
        if address in self.services:
            raise OSError(f"address {address!r} is in use")
        self.services[address] = _Service(source, on_requester_left)

    def stop(self, address: str) -> None:
        self.services.pop(address, None)

    def peer(self, name: str, address: str) -> InProcessPeer:
        return InProcessPeer(self, name, address)


class InProcessPeer:
    """The in-process counterpart of :class:`garfield.transport.client.Peer`: same `fetch`,
    `status` and `close`, same errors (Rejected for an unusable answer, Unreachable otherwise)."""

    def __init__(self, network: InProcessNetwork, name: str, address: str) -> None:
        self.network = network
        self.name = name
        self.address = address
        self._requesters: set[str] = set()  # the names we asked in: told to the peer when we leave

    async def fetch(self, request: bytes, expect: Expect, timeout: float) -> Received:
        parsed = TensorRequest.FromString(request)
        if parsed.requester:
            self._requesters.add(parsed.requester)
        service = self.network.services.get(self.address)
        if service is None:
            raise Unreachable(grpc.StatusCode.UNAVAILABLE, f"{self.name} is not serving")
        call = asyncio.ensure_future(service.source.serve(parsed))
        service.calls.add(call)
        try:
            async with asyncio.timeout(timeout):
                messages = await call
        except TimeoutError:
            raise Unreachable(grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer within {timeout:g} s") from None
        except RequestRejected as exc:
            service.source.count_rejected(exc.reason, str(exc))
            raise Rejected("transport", f"request refused: {exc}") from None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are cancelled (the quorum was met without us)
            # the call was ended by the peer's service stopping, as a stopped server ends its calls
            raise Unreachable(grpc.StatusCode.UNAVAILABLE, f"{self.name} stopped serving") from None
        finally:
            if not call.done():
                call.cancel()
            service.calls.discard(call)
        assembler = Assembler(expect)
        for chunk in messages:
            assembler.feed(chunk)
        return assembler.finish()

    async def status(self, timeout: float = 5.0) -> str:
        service = self.network.services.get(self.address)
        if service is None:
            raise Unreachable(grpc.StatusCode.UNAVAILABLE, f"{self.name} is not serving")
        return service.source.status_json()

    async def close(self) -> None:
        service = self.network.services.get(self.address)
        if service is not None and service.on_requester_left is not None:
            for name in sorted(self._requesters):
                service.on_requester_left(name)
        self._requesters.clear()
