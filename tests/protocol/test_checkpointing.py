"""Server checkpoints inside the protocol (spec.checkpoint), one process, real gRPC on loopback:
correct servers write them every everySteps steps and keep the last K; simulated Byzantine
servers and workers never write; a server built again on the same folder resumes from its newest."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from garfield.observability.checkpoints import CheckpointStore

import harness


def test_correct_servers_checkpoint_and_byzantine_ones_never_do(tmp_path: Path) -> None:
    doc = harness.manifest(4, 1, 3, 0, steps=30, worker_gar="average",
                           server_attack={"count": 1, "name": "random"})
    doc["spec"]["checkpoint"] = {"everySteps": 10, "keep": 1}
    cluster = harness.build(doc, output_dir=str(tmp_path))
    codes = asyncio.run(harness.run(cluster, timeout=120))
    assert set(codes.values()) == {0}, codes
    for index in range(3):  # step 30 is the end: the final model, not a checkpoint
        assert CheckpointStore(tmp_path / f"server-{index}" / "checkpoints", keep=1).steps() == [20], index
    assert not (tmp_path / "server-3" / "checkpoints").exists()  # the simulated Byzantine server
    assert not any((tmp_path / f"worker-{i}").exists() for i in range(3))

    # server-0 built again on the same folder resumes at its newest checkpoint's step and state
    again = harness.build(doc, output_dir=str(tmp_path))
    server = next(n for n in again.nodes if n.name == "server-0")
    assert server.resume() == 20  # type: ignore[attr-defined]


def test_a_checkpoint_that_cannot_be_written_does_not_stop_training(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    doc = harness.manifest(1, 0, 2, 0, steps=12, worker_gar="average")
    doc["spec"]["checkpoint"] = {"everySteps": 5}
    (tmp_path / "server-0").write_text("a file where the server's folder should be")
    cluster = harness.build(doc, output_dir=str(tmp_path))
    with caplog.at_level(logging.ERROR, logger="garfield.server"):
        codes = asyncio.run(harness.run(cluster, timeout=120))
    assert codes == {"server-0": 0, "worker-0": 0, "worker-1": 0}, codes
    failed = [r.__dict__["fields"]["step"] for r in caplog.records if r.getMessage() == "cannot write a checkpoint"]
    assert failed == [5, 10]
