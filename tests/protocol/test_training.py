"""Whole jobs in one process over real gRPC on loopback: they learn, survive crashes and
Byzantine nodes, and catch up."""

from __future__ import annotations

import asyncio

import pytest
import torch

import harness


def _run(doc: dict, during=None, replace=None, timeout: float = 120.0) -> tuple[harness.Cluster, dict]:
    cluster = harness.build(doc, replace=replace)
    codes = asyncio.run(harness.run(cluster, timeout=timeout, during=during))
    return cluster, codes


def _correct(cluster: harness.Cluster, role: str) -> list:
    return [n for n in cluster.by_role(role) if not n.state.byzantine]


def test_ssmw_learns() -> None:
    cluster, codes = _run(harness.manifest(1, 0, 4, 1, steps=80))
    assert set(codes.values()) == {0}
    server = cluster.by_role("server")[0]
    status = server.state.status()
    assert status["step"] == 80 and status["phase"] == "done"
    assert status["accuracy"] > 0.9  # evaluated at the end; chance is 0.25
    timing = status["timing"]
    assert {"communication", "aggregation", "computation"} <= set(timing)
    assert timing["communication"] > 0 and timing["aggregation"] >= 0 and timing["computation"] > 0
    assert abs(sum(timing["share"].values()) - 1) < 1e-6
    assert status["timing"]["steps"] == 80


def test_msmw_learns_under_byzantine_workers_and_server() -> None:
    """4 servers (f=1, one sends random models), 7 workers (f=2, two send sign-flipped x10)."""
    doc = harness.manifest(4, 1, 7, 2, steps=60, worker_gar="median", server_gar="median",
                           worker_attack={"count": 2, "name": "signflip", "params": {"scale": 10}},
                           server_attack={"count": 1, "name": "random"})
    cluster, codes = _run(doc)
    assert set(codes.values()) == {0}
    servers = _correct(cluster, "server")
    assert len(servers) == 3
    for server in servers:
        assert server.state.step == 60
        assert harness.accuracy(server) > 0.9
    # The contraction step keeps correct servers' models together despite the random one.
    harness.assert_attack_reached_every_quorum(cluster)
    models = torch.stack([s.adapter.get_params() for s in servers])
    spread = (models - models.mean(0)).norm(dim=1).max() / models.mean(0).norm()
    assert spread < 0.05, spread


def test_averaging_is_ruined_by_the_same_attack() -> None:
    """The control: the same sign-flip workers make plain averaging fail, so the test above is not vacuous."""
    doc = harness.manifest(1, 0, 7, 2, steps=60, worker_gar="average",
                           worker_attack={"count": 2, "name": "signflip", "params": {"scale": 10}})
    cluster, codes = _run(doc)
    assert set(codes.values()) == {0}
    harness.assert_attack_reached_every_quorum(cluster)
    assert harness.accuracy(cluster.by_role("server")[0]) < 0.6


def test_decentralized_learns_with_a_byzantine_peer() -> None:
    doc = harness.manifest(None, 0, 5, 1, steps=60, worker_gar="median",
                           worker_attack={"count": 1, "name": "signflip", "params": {"scale": 10}})
    cluster, codes = _run(doc)
    assert set(codes.values()) == {0}
    harness.assert_attack_reached_every_quorum(cluster)
    for peer in _correct(cluster, "peer"):
        assert peer.state.step == 60
        assert harness.accuracy(peer) > 0.9


def test_killing_f_workers_and_f_servers_mid_run_still_completes() -> None:
    doc = harness.manifest(4, 1, 7, 2, steps=120, worker_gar="median", server_gar="median", rpc=2.0)
    victims = {"server-3", "worker-5", "worker-6"}

    async def kill(cluster: harness.Cluster) -> None:
        server = cluster.by_role("server")[0]
        while server.state.step < 30:
            await asyncio.sleep(0.02)
        for node in cluster.nodes:
            if node.name in victims:
                await node.stop()  # sockets closed: in-flight and later calls to it fail

    cluster = harness.build(doc)

    async def main() -> dict:
        for node in cluster.nodes:
            await node.start()
        tasks = {n.name: asyncio.create_task(n.run()) for n in cluster.nodes}
        killer = asyncio.create_task(kill(cluster))
        await killer
        for name in victims:
            tasks[name].cancel()
        await asyncio.wait([t for n, t in tasks.items() if n not in victims], timeout=120)
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        return {n: (t.result() if not t.cancelled() else None) for n, t in tasks.items()}

    codes = asyncio.run(main())
    for name, code in codes.items():
        if name not in victims:
            assert code == 0, (name, code)
    for server in cluster.by_role("server")[:3]:
        assert server.state.step == 120
        assert harness.accuracy(server) > 0.9


def test_a_worker_that_falls_behind_catches_up() -> None:
    """A worker that starts late is asked for step t while at 0: it jumps to the servers' step."""
    doc = harness.manifest(1, 0, 4, 1, steps=150)
    cluster = harness.build(doc)
    late = cluster.by_role("worker")[3]

    async def main() -> None:
        server = cluster.by_role("server")[0]
        others = [n for n in cluster.nodes if n is not late]
        for node in others:
            await node.start()
        tasks = [asyncio.create_task(n.run()) for n in others]
        while server.state.step < 40:
            await asyncio.sleep(0.01)
        await late.start()
        tasks.append(asyncio.create_task(late.run()))
        results = await asyncio.wait_for(asyncio.gather(*tasks), 120)
        assert set(results) == {0}

    asyncio.run(main())
    computed = late.state.timing()["steps"]
    assert late.state.phase == "done" and late.state.step > 40
    assert computed < 150 - 30  # it skipped the steps it missed instead of replaying them


@pytest.mark.parametrize("attack", [
    {"name": "empire", "params": {"epsilon": 10}},  # omniscient: k honest vectors computed on its own data
    {"name": "labelflip", "params": {"num_classes": 4}},
    {"name": "nan"},
    {"name": "crash", "params": {"after": 10}},
])
def test_worker_attacks_run_inside_the_protocol(attack: dict) -> None:
    doc = harness.manifest(1, 0, 5, 1, steps=50, worker_attack={"count": 1, **attack})
    cluster, codes = _run(doc)
    assert set(codes.values()) == {0}
    harness.assert_attack_reached_every_quorum(cluster)
    server = cluster.by_role("server")[0]
    assert server.state.step == 50 and harness.accuracy(server) > 0.9
    if attack["name"] == "nan":
        assert server.state.rejected.get("nonfinite", 0) >= 1
    byzantine = [w for w in cluster.by_role("worker") if w.state.byzantine]
    assert len(byzantine) == 1
    if attack["name"] == "empire":
        assert len(byzantine[0].source._buffers) == 4  # k = n - f momentum buffers
    if attack["name"] == "labelflip":  # the node gave the attack's transform to the attacker's adapter, to no other
        assert byzantine[0].adapter.label_transform is byzantine[0].source.attack.label_transform is not None
        assert all(w.adapter.label_transform is None for w in cluster.by_role("worker") if not w.state.byzantine)


@pytest.mark.parametrize("attack", ["nan", "silent", "stale", "reversed"])
def test_server_attacks_run_inside_the_protocol(attack: str) -> None:
    doc = harness.manifest(4, 1, 4, 1, steps=40, server_attack={"count": 1, "name": attack})
    cluster, codes = _run(doc)
    assert set(codes.values()) == {0}
    harness.assert_attack_reached_every_quorum(cluster)
    servers = _correct(cluster, "server")
    for server in servers:
        assert server.state.step == 40 and harness.accuracy(server) > 0.9
    if attack == "nan":
        rejected = sum(n.state.rejected.get("nonfinite", 0) for n in cluster.nodes if not n.state.byzantine)
        assert rejected >= 1


def test_pre_aggregation_runs_in_front_of_both_roles_rules() -> None:
    """NNM before the servers' median of worker gradients (under A Little Is Enough) and ARC
    before their median of server models: the chain the job names runs on real quorums, on
    every step, and the job still learns."""
    doc = harness.manifest(4, 1, 7, 2, steps=60, worker_gar="median", server_gar="median",
                           worker_attack={"count": 2, "name": "little"})
    doc["spec"]["workers"]["gar"]["preAggregation"] = [{"name": "nnm"}]
    doc["spec"]["servers"]["gar"]["preAggregation"] = [{"name": "arc"}]
    from garfield.aggregators import _preaggregate

    calls: dict[str, int] = {"nnm": 0, "arc": 0}
    real = dict(_preaggregate.IMPLEMENTATIONS)

    def counting(name: str):
        def run(*args, **kwargs):
            calls[name] += 1
            return real[name](*args, **kwargs)
        return run

    try:
        _preaggregate.IMPLEMENTATIONS.update(nnm=counting("nnm"), arc=counting("arc"))
        cluster, codes = _run(doc)
    finally:
        _preaggregate.IMPLEMENTATIONS.update(real)
    assert set(codes.values()) == {0}
    servers = _correct(cluster, "server")
    # Each of the 4 servers mixes worker gradients once a step (60 steps); servers aggregate models too.
    assert calls["nnm"] >= 3 * 60 and calls["arc"] >= 3 * 60, calls
    for server in servers:
        assert server.state.step == 60
        assert harness.accuracy(server) > 0.9


def test_an_adaptive_attacker_aims_at_the_jobs_own_rule() -> None:
    """optimal-little: the Byzantine workers are handed the servers' rule for worker gradients
    (median after nnm) and search their scale against it every round; the job still completes."""
    doc = harness.manifest(1, 0, 7, 2, steps=20, worker_gar="median",
                           worker_attack={"count": 2, "name": "optimal-little", "params": {"evals": 6}})
    doc["spec"]["workers"]["gar"]["preAggregation"] = [{"name": "nnm"}]
    cluster, codes = _run(doc)
    assert set(codes.values()) == {0}
    attackers = [n for n in cluster.by_role("worker") if n.state.byzantine]
    assert len(attackers) == 2
    for node in attackers:
        attack = node.source.attack
        assert attack.defence.rule == "median" and [s.name for s in attack.defence.pre] == ["nnm"]
        assert attack.last_scale is not None
    assert cluster.by_role("server")[0].state.step == 20
