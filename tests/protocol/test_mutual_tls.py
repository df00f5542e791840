"""Mutual TLS between replicas (issue 16): a process on a crashed worker's port that holds no key
of the job, or holds another replica's key, is refused and counted, and the job ends as it would
with that worker crashed; a request is served only in its caller's own name and only to the roles
that may ask for it; a plaintext client gets nothing.

Real gRPC over loopback, every node in one event loop (harness.py)."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import numpy as np
import pytest

from garfield.proto import GRADIENT, MODEL, TensorRequest
from garfield.protocol.quorum import PeerOrder
from garfield.security.certificates import new_ca
from garfield.security.files import TlsMaterial
from garfield.transport import Peer, Unreachable, start_server, tensor_request
from garfield.transport.server import RequestRejected, ServerTls
from garfield.wire import Rejected, encode
from garfield.wire.codec import Expect

import harness

STEPS = 60
KILL_AT = 10  # the server's step at which worker-4 is killed


class ForgedWorker:
    """Answers every gradient request as worker-4 would, protocol-perfect, with a gradient that
    would wreck the model (-100x a plausible one): only authentication keeps it out."""

    def __init__(self, d: int) -> None:
        self.d = d
        self.served = 0

    async def serve(self, request: TensorRequest) -> list[bytes]:
        self.served += 1
        return encode(np.full(self.d, -100.0, np.float32), kind=GRADIENT, step=request.step, sender="worker-4")

    def status_json(self) -> str:
        return "{}"

    def count_rejected(self, reason: str, detail: str) -> None:
        pass


class AnyCaller:
    """The impostor's own authority: it would serve anyone (its handshake is what fails)."""

    def authenticate(self, uri: str | None) -> str:
        return "server-0"

    def permit(self, caller: str, request: TensorRequest) -> None:
        pass


def _run_with_worker_killed(impostor_key: str | None, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A 1-server, 5-worker (f=1) job over mutual TLS; worker-4 is killed at step KILL_AT and, unless
    `impostor_key` is None, a ForgedWorker binds its port holding that key: "foreign" (a certificate
    naming worker-4 from a CA that is not the job's) or "worker-3" (the job's own certificate of
    another replica).

    The server asks every worker every step (no preferred quorum), so it keeps dialing worker-4's
    port instead of leaving a peer that stopped answering for later steps. And once the impostor
    is about to bind, the test plays the asynchronous network: the correct workers' replies to the
    server are delayed until its dial of the impostor failed, so the refusal is seen
    however fast the rest of the job runs (gRPC retries a failed channel with a backoff of up to
    a second)."""
    monkeypatch.setattr(PeerOrder, "hedge_delay", lambda self: None)
    doc = harness.manifest(1, 0, 5, 1, steps=STEPS)
    out: dict = {}

    async def main() -> None:
        cluster = harness.build(doc, tls=True)
        server = cluster.by_role("server")[0]
        forged = ForgedWorker(server.shape[0])
        impostor: list = []
        held, refused = asyncio.Event(), asyncio.Event()
        count_rejected = server.count_rejected

        def counting(reason: str, detail: str, peer: str = "") -> None:
            count_rejected(reason, detail, peer)
            if reason == "identity":
                refused.set()

        server.count_rejected = counting  # type: ignore[method-assign]

        def delayed(fetch):  # type: ignore[no-untyped-def]
            async def fetch_when_refused(*args, **kwargs):  # type: ignore[no-untyped-def]
                if held.is_set():
                    await refused.wait()
                return await fetch(*args, **kwargs)
            return fetch_when_refused

        async def kill_and_impersonate(c: harness.Cluster) -> None:
            while server.state.step < KILL_AT:
                await asyncio.sleep(0.01)
            victim = c.tasks["worker-4"]
            if impostor_key is not None:
                for peer in server.worker_peers:  # the correct workers' replies wait for the refusal
                    if peer.name != "worker-4":
                        peer.fetch = delayed(peer.fetch)  # type: ignore[method-assign]
                held.set()
            victim.cancel()
            await asyncio.gather(victim, return_exceptions=True)  # its server is stopped: the port is free
            if impostor_key is None:
                return
            material = (c.material("worker", 4, ca=new_ca("t", "default")) if impostor_key == "foreign"
                        else c.material("worker", 3))
            impostor.append((await start_server(forged, c.workers[4], server.tensor_bytes,
                                                tls=ServerTls(material, AnyCaller())))[0])

        codes = await harness.run(cluster, during=kill_and_impersonate)
        for grpc_server in impostor:
            await grpc_server.stop(None)
        out.update(codes=codes, status=server.state.status(), accuracy=harness.accuracy(server), served=forged.served,
                   impostor_up=bool(impostor))

    asyncio.run(main())
    return out


@pytest.fixture(scope="module")
def crashed_run() -> dict:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _run_with_worker_killed(None, monkeypatch)


@pytest.mark.parametrize("key", ["foreign", "worker-3"])
def test_an_impostor_on_a_killed_workers_port_is_refused_counted_and_changes_nothing(
        key: str, crashed_run: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run_with_worker_killed(key, monkeypatch)
    assert run["impostor_up"]
    assert run["codes"].pop("worker-4") is None  # killed
    assert set(run["codes"].values()) == {0}
    assert run["status"]["phase"] == "done" and run["status"]["step"] == STEPS
    assert run["served"] == 0, "the impostor was asked for a gradient: a handshake let it through"
    assert run["status"]["rejected"].get("identity", 0) >= 1, run["status"]["rejected"]
    # As if worker-4 had just crashed: same accuracy, give or take the quorum's arrival order.
    assert crashed_run["status"]["step"] == STEPS and not crashed_run["status"]["rejected"].get("identity")
    assert run["accuracy"] > 0.9 and abs(run["accuracy"] - crashed_run["accuracy"]) <= 0.05, (run["accuracy"],
                                                                                             crashed_run["accuracy"])


def _expect(kind: int, sender: str, d: int) -> Expect:
    return Expect(kind=kind, sender=sender, dtype="float32", shape=(d,), min_step=0, max_step=STEPS)


def test_requests_are_served_only_in_the_callers_own_name_and_to_roles_that_may_ask() -> None:
    doc = harness.manifest(1, 0, 5, 1, steps=STEPS)

    async def main() -> None:
        cluster = harness.build(doc, tls=True)
        server, worker0 = cluster.by_role("server")[0], cluster.by_role("worker")[0]
        d = server.shape[0]
        for node in (server, worker0):
            await node.start()
        await server.publish(MODEL, 0, server.adapter.zeros())
        await worker0.publish(GRADIENT, 0, worker0.adapter.zeros())

        def client(to: str, address: str, as_role: str, as_index: int) -> Peer:
            return Peer(to, address, 4 * d, tls=cluster.material(as_role, as_index), tls_name=f"t-{to}")

        worker3 = client("server-0", cluster.servers[0], "worker", 3)
        try:
            # a worker reads a model in its own name: served (the control)
            assert (await worker3.fetch(tensor_request(MODEL, 0, "worker-3"), _expect(MODEL, "server-0", d), 5)).step == 0
            # ...and in another replica's name: refused, counted as impersonation
            with pytest.raises(Rejected, match="impersonation: worker-3 asked in the name of 'worker-1'"):
                await worker3.fetch(tensor_request(MODEL, 0, "worker-1"), _expect(MODEL, "server-0", d), 5)
            assert server.state.rejected.get("impersonation") == 1
        finally:
            await worker3.close()

        # gradients feed the servers' aggregation: a worker may not read another worker's
        nosy = client("worker-0", cluster.workers[0], "worker", 3)
        allowed = client("worker-0", cluster.workers[0], "server", 0)
        try:
            with pytest.raises(Rejected, match="forbidden: a worker may not ask for gradient"):
                await nosy.fetch(tensor_request(GRADIENT, 0, "worker-3"), _expect(GRADIENT, "worker-0", d), 5)
            assert worker0.state.rejected.get("forbidden") == 1
            assert (await allowed.fetch(tensor_request(GRADIENT, 0, "server-0"), _expect(GRADIENT, "worker-0", d), 5)).step == 0
        finally:
            await nosy.close()
            await allowed.close()

        # a plaintext client gets nothing from any replica (the handshake fails before any handler)
        for name, address in (("server-0", cluster.servers[0]), ("worker-0", cluster.workers[0])):
            plain = Peer(name, address, 4 * d)
            try:
                with pytest.raises(Unreachable):
                    await plain.fetch(tensor_request(MODEL, 0, "worker-3"), _expect(MODEL, name, d), 2)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await plain.status(timeout=2)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            finally:
                await plain.close()
        for node in (server, worker0):
            await node.stop()
        assert server.state.rejected.get("impersonation") == 1  # nothing else reached the service

    asyncio.run(main())


def test_a_certificate_of_another_job_names_no_replica_of_this_one() -> None:
    doc = harness.manifest(1, 0, 5, 1, steps=STEPS)
    cluster = harness.build(doc, tls=True)
    server = cluster.by_role("server")[0]
    assert server.authenticate("garfield://default/t/worker/3") == "worker-3"
    for uri, says in [(None, "names no replica"), ("spiffe://x/y", "names no replica"),
                      ("garfield://default/other/worker/3", "is not a replica of default/t"),
                      ("garfield://ml/t/worker/3", "is not a replica of default/t"),
                      ("garfield://default/t/worker/9", "this job has no worker-9"),
                      ("garfield://default/t/peer/0", "this job has no peer-0")]:
        with pytest.raises(RequestRejected) as info:
            server.authenticate(uri)
        assert says in str(info.value) and info.value.reason == "identity", (uri, info.value)


def test_tls_material_is_only_what_the_replica_needs() -> None:
    cluster = harness.build(harness.manifest(1, 0, 3, 0, steps=2), tls=True)
    material: TlsMaterial = cluster.nodes[0].config.tls  # type: ignore[assignment]
    assert b"PRIVATE KEY" not in material.ca and b"PRIVATE KEY" in material.key
