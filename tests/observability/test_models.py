"""Final models: written atomically with a checked manifest, loadable by the framework's own
loader, never written by a simulated Byzantine replica or a worker, and a damaged file is named."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from garfield.adapters import create
from garfield.node import export_model
from garfield.observability import termination
from garfield.observability.models import MANIFEST, ModelError, read_manifest, sha256_of, write_model
from garfield.plan.replicas import SimulatedAttack
from garfield.spec.kinds import Role
from garfield.task import Task


def torch_adapter(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))  # a buffer too (running stats)
    x = torch.randn(32, 5)
    task = Task(model, nn.CrossEntropyLoss(), lambda p: torch.optim.SGD(p, lr=0.1), TensorDataset(x, (x[:, 0] > 0).long()))
    spec = SimpleNamespace(training=SimpleNamespace(learning_rate=None, batch_size=8, seed=1))
    return create("pytorch", task, spec, "server", 0)


def test_a_pytorch_model_round_trips_into_a_fresh_module(tmp_path: Path) -> None:
    adapter = torch_adapter()
    adapter.set_params(torch.arange(adapter.num_params, dtype=torch.float32) / 100)
    manifest = write_model(adapter, tmp_path / "server-0", job="j", replica="server-0", framework="pytorch",
                           step=7, accuracy=0.5)
    assert sorted(p.name for p in (tmp_path / "server-0").iterdir()) == [MANIFEST, "model.pt"]  # no partial files
    assert read_manifest(tmp_path / "server-0") == manifest
    assert manifest["step"] == 7 and manifest["accuracy"] == 0.5 and manifest["parameters"] == adapter.num_params
    assert manifest["sha256"] == sha256_of(tmp_path / "server-0" / "model.pt")
    fresh = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    fresh.load_state_dict(torch.load(manifest["path"], weights_only=True))
    flat = torch.cat([p.detach().reshape(-1) for p in fresh.parameters()])
    assert torch.equal(flat, adapter.get_params())


def test_a_damaged_or_missing_model_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "server-0"
    write_model(torch_adapter(), folder, job="j", replica="server-0", framework="pytorch", step=1, accuracy=None)
    model = folder / "model.pt"
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])  # half-written
    with pytest.raises(ModelError, match="does not match the manifest"):
        read_manifest(folder)
    model.unlink()
    with pytest.raises(ModelError, match="missing"):
        read_manifest(folder)
    (folder / MANIFEST).write_text("{not json")
    with pytest.raises(ModelError, match="not JSON"):
        read_manifest(folder)
    with pytest.raises(ModelError, match="no model.json"):
        read_manifest(tmp_path / "nothing-here")


def _node(tmp_path: Path, role: Role, attack: SimulatedAttack | None = None, output: Path | None = None) -> tuple[Any, Any]:
    config = SimpleNamespace(output_dir=str(output if output is not None else tmp_path), attack=attack, role=role,
                             name=f"{role}-0", job="j", spec=SimpleNamespace(framework="pytorch"))
    state = SimpleNamespace(step=3, accuracy=0.9)
    return config, SimpleNamespace(adapter=torch_adapter(), state=state, resumed_from=None)


def test_only_correct_servers_and_peers_write(tmp_path: Path) -> None:
    assert set(export_model(*_node(tmp_path, Role.SERVER))) == {"model"}
    assert set(export_model(*_node(tmp_path, Role.PEER))) == {"model"}
    assert export_model(*_node(tmp_path, Role.WORKER)) == {}
    assert export_model(*_node(tmp_path, Role.SERVER, SimulatedAttack("random", {}))) == {}  # a Byzantine server: nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["peer-0", "server-0"]
    assert json.loads((tmp_path / "server-0" / MANIFEST).read_text())["step"] == 3


def test_the_final_status_names_the_model(tmp_path: Path) -> None:
    """What export_model returns goes into the server's final status (its container's termination
    message, which the operator turns into status.models)."""
    final = export_model(*_node(tmp_path / "out", Role.SERVER, output=tmp_path / "out"))
    manifest = read_manifest(tmp_path / "out" / "server-0")
    assert final == {"model": {"path": manifest["path"], "sha256": manifest["sha256"], "format": manifest["format"],
                               "step": 3, "accuracy": 0.9}}
    assert termination.parse(termination.final_message({"step": 3, **final})) == {"step": 3, **final}


def test_a_model_that_cannot_be_written_fails_the_replica(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    with caplog.at_level(logging.ERROR, logger="garfield.node"):
        with pytest.raises(OSError):  # the node fails (exit 1) rather than end without its result
            export_model(*_node(tmp_path, Role.SERVER, output=blocker))
    assert any(r.getMessage() == "cannot write the final model" for r in caplog.records)
