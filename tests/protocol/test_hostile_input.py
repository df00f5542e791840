"""Malformed, oversized, stale and impostor traffic is rejected, counted by reason, and training
still completes; observability shows it (/status, /metrics, the Status RPC)."""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request

import grpc
import numpy as np
import pytest

from garfield.observability.http import MetricsServer
from garfield.proto import GET_TENSOR, GRADIENT, MODEL, TensorChunk, TensorRequest
from garfield.protocol.quorum import PeerOrder
from garfield.transport import Peer, start_server
from garfield.transport.server import RequestRejected
from garfield.wire import encode

import harness

EXPECTED = {"decode", "shape", "dtype", "nonfinite", "oversized", "stale", "sender", "size"}


class Impostor:
    """Stands at a worker's address and answers each request with a different malformed reply."""

    def __init__(self, name: str, d: int) -> None:
        self.name, self.d = name, d
        self.kinds = itertools.cycle(sorted(EXPECTED))
        self.sent: dict[str, int] = {}

    async def serve(self, request: TensorRequest) -> list[bytes]:
        kind = next(self.kinds)
        if kind == "stale" and request.step == 0:
            kind = "decode"
        self.sent[kind] = self.sent.get(kind, 0) + 1
        d, name, step = self.d, self.name, request.step
        good = np.ones(d, np.float32)
        if kind == "decode":
            return [b"\x0a\xff\xff\xff\xff not a protobuf"]
        if kind == "shape":
            return encode(np.ones(d + 1, np.float32), kind=GRADIENT, step=step, sender=name)
        if kind == "dtype":
            return encode(np.ones(d, np.float64), kind=GRADIENT, step=step, sender=name)
        if kind == "nonfinite":
            bad = good.copy()
            bad[d // 2] = np.nan
            return encode(bad, kind=GRADIENT, step=step, sender=name)
        if kind == "oversized":
            return [TensorChunk(kind=GRADIENT, step=step, sender=name, dtype="float32", shape=[d], total_bytes=4 * d,
                                data=b"\0" * (4 * d + 16384)).SerializeToString()]
        if kind == "stale":
            return encode(good, kind=GRADIENT, step=step - 1, sender=name)
        if kind == "sender":
            return encode(good, kind=GRADIENT, step=step, sender="worker-0")
        assert kind == "size"
        return [TensorChunk(kind=GRADIENT, step=step, sender=name, dtype="float32", shape=[d], total_bytes=4 * d + 4,
                            data=good.tobytes()).SerializeToString()]

    def status_json(self) -> str:
        return "{}"

    def count_rejected(self, reason: str, detail: str) -> None:
        pass


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.headers["Content-Type"], response.read()


def test_hostile_worker_and_client_are_rejected_counted_and_training_completes(monkeypatch) -> None:
    # Ask every worker every step (no preferred quorum), so the impostor is asked 60 times instead
    # of being demoted after its first bad answer (that demotion is tested in tests/wire).
    monkeypatch.setattr(PeerOrder, "hedge_delay", lambda self: None)
    doc = harness.manifest(1, 0, 5, 1, steps=60)
    seen: dict = {}

    async def main() -> None:
        address = f"127.0.0.1:{harness.free_ports(1)[0]}"
        cluster = harness.build(doc, replace={("worker", 4): address})
        server = cluster.by_role("server")[0]
        impostor = Impostor("worker-4", server.shape[0])
        impostor_server, _ = await start_server(impostor, address, 1 << 20)
        metrics = MetricsServer(server.state, "127.0.0.1", 0).start()

        async def hostile_client(c: harness.Cluster) -> None:
            peer = Peer("server-0", c.servers[0], 1 << 20)
            raw = peer.channel.unary_stream(GET_TENSOR, request_serializer=None, response_deserializer=None)
            bad_requests = [b"\xff\xfe garbage",
                            TensorRequest(kind=GRADIENT, step=1, requester="x").SerializeToString(),  # servers offer models
                            TensorRequest(kind=MODEL, step=10**6, requester="x").SerializeToString()]  # beyond the last step
            for request in bad_requests:
                try:
                    async for _ in raw(request, timeout=5):
                        pass
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
            while server.state.step < 20:
                await asyncio.sleep(0.01)
            seen["rpc"] = json.loads(await peer.status())
            seen["status"] = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics.port}/status")
            seen["metrics"] = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics.port}/metrics")
            await peer.close()

        codes = await harness.run(cluster, during=hostile_client)
        metrics.stop()
        await impostor_server.stop(None)
        assert set(codes.values()) == {0}
        seen["server"] = server
        seen["impostor"] = impostor.sent

    asyncio.run(main())
    server = seen["server"]
    status = server.state.status()
    assert status["phase"] == "done" and status["step"] == 60
    assert harness.accuracy(server) > 0.9
    # every kind of bad reply was sent and rejected under its own reason
    assert set(seen["impostor"]) == EXPECTED
    for reason in EXPECTED:
        assert status["rejected"].get(reason, 0) >= 1, (reason, status["rejected"])
    # bad requests: undecodable, wrong kind, step out of range
    for reason in ("decode", "kind", "step"):
        assert status["rejected"].get(reason, 0) >= 1, (reason, status["rejected"])
    # observability contract, three ways
    rpc = seen["rpc"]
    assert {"job", "role", "index", "byzantine", "step", "total_steps", "loss", "accuracy", "steps_per_second",
            "rejected", "phase", "timing"} <= set(rpc)
    assert rpc["role"] == "server" and rpc["phase"] == "running" and rpc["step"] >= 20
    ctype, body = seen["status"]
    assert ctype == "application/json" and json.loads(body)["total_steps"] == 60
    ctype, body = seen["metrics"]
    text = body.decode()
    assert 'garfield_rejected_messages_total{index="0",job="t",reason="nonfinite",role="server"}' in text
    assert "garfield_step{" in text and "garfield_step_seconds_total{" in text


def test_requesters_that_name_no_replica_are_refused_and_never_remembered() -> None:
    """A Byzantine client may put anything in `requester`; a node remembers requesters (to wait for
    their last request before exiting), so only the job's own replica names may be remembered."""
    doc = harness.manifest(1, 0, 5, 1, steps=4)

    async def main() -> None:
        cluster = harness.build(doc)
        server = cluster.by_role("server")[0]
        assert server.replica_names == {"server-0", *(f"worker-{i}" for i in range(5))}
        for i in range(300):
            name = f"worker-{i}-" + "x" * 60_000 if i % 2 else f"server-{i + 1}"
            with pytest.raises(RequestRejected) as info:
                await server.serve(TensorRequest(kind=MODEL, step=0, requester=name))
            assert info.value.reason == "requester" and len(str(info.value)) < 200
            server._requester_left(name)  # its stream ends: nothing to forget either
        assert not server._last_seen and not server._left and not server._final_seen
        await server.publish(MODEL, 0, server.adapter.zeros())
        assert await server.serve(TensorRequest(kind=MODEL, step=0, requester="worker-3"))
        assert await server.serve(TensorRequest(kind=MODEL, step=0, requester=""))  # anonymous: served, not remembered
        assert set(server._last_seen) == {"worker-3"}

    asyncio.run(main())
