"""Building job variants from the shipped examples and running them for real (`garfield run`'s code)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from garfield.launcher.local import launch
from garfield.launcher.summary import RunResult
from garfield.spec.validation import Job, validate_manifest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DELETE = object()
WHOLE = {"params", "args"}  # replaced, not merged: an attack's or rule's parameters belong together


def _merge(target: dict[str, Any], edits: dict[str, Any]) -> None:
    for key, value in edits.items():
        if value is DELETE:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict) and key not in WHOLE:
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def variant(example: str, name: str, spec: dict[str, Any] | None = None) -> Job:
    """examples/<example> with `spec` deep-merged in (DELETE removes a key; `params`/`args` are
    replaced whole), renamed, validated."""
    manifest = yaml.safe_load((EXAMPLES / example).read_text())
    manifest["metadata"]["name"] = name
    _merge(manifest["spec"], spec or {})
    return validate_manifest(manifest, source=f"{example} variant {name}")


def run(job: Job, out: Path, timeout: float = 300, **kwargs: Any) -> RunResult:
    """Run to the end; on failure, the assertion shows the launcher's message (with the node's log)."""
    result = launch(job, out / job.name, progress="none", timeout=timeout, **kwargs)
    return result


def exported_accuracy(job: Job, manifest: dict[str, Any]) -> float:
    """The test accuracy of an exported model, loaded the way its user would: the task's own fresh
    model (load_task), the file read back with the framework's loader (torch.load +
    load_state_dict, or keras.models.load_model), evaluated by a fresh adapter on the task's test set."""
    from garfield.adapters import create
    from garfield.task import Task, load_task

    spec = job.spec
    task = load_task(spec.task.entrypoint, spec.task.args)
    if manifest["format"] == "pytorch-state-dict":
        import torch

        task.model.load_state_dict(torch.load(manifest["path"], weights_only=True))
    else:
        import keras

        assert manifest["format"] == "keras", manifest
        task = Task(keras.models.load_model(manifest["path"]), task.loss, task.optimizer, task.train, task.test)
    accuracy = create(spec.framework, task, spec, "server", 0).evaluate()["accuracy"]
    return float(accuracy)


def accuracies(result: RunResult) -> list[float]:
    values = [v for v in result.final_accuracy.values() if isinstance(v, (int, float))]
    assert values, f"no correct server reported an accuracy: {result.to_dict()}"
    return values


class FinalModels:
    """Fetches each correct server's final model over the real transport, for the spread measurement.

    The requests go out as soon as the servers listen and ask for step `total_steps`: a server answers
    such a request the moment it publishes its last model, so nothing depends on catching the short
    window between "done" and exit. Runs its own event loop in a thread beside the launcher.
    """

    def __init__(self, servers: dict[str, str], params: int, total_steps: int, timeout: float = 600) -> None:
        self.servers, self.params, self.total_steps, self.timeout = servers, params, total_steps, timeout
        self.models: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self._thread: Any = None

    def start(self) -> None:
        import asyncio
        import threading

        self._thread = threading.Thread(target=lambda: asyncio.run(self._fetch_all()), daemon=True)
        self._thread.start()

    async def _fetch_all(self) -> None:
        import asyncio

        from garfield.proto import MODEL
        from garfield.transport import Peer, tensor_request
        from garfield.wire.codec import expect_for

        async def one(name: str, address: str) -> None:
            sender = "-".join(name.rsplit("-", 2)[-2:])  # "<job>-server-0" -> "server-0"
            peer = Peer(sender, address, self.params * 4)
            try:
                expect = expect_for((self.params,), "float32", kind=MODEL, sender=sender, min_step=self.total_steps)
                # anonymous: a probe names no replica (a node refuses requesters that are not its peers)
                received = await peer.fetch(tensor_request(MODEL, self.total_steps, ""), expect, self.timeout)
                self.models[name] = received.array.astype("float64")
            except Exception as exc:  # noqa: BLE001 - reported by the test's assertion
                self.errors[name] = repr(exc)
            finally:
                await peer.close()

        await asyncio.gather(*(one(n, a) for n, a in self.servers.items()))

    def join(self, timeout: float = 30) -> dict[str, Any]:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self.errors, self.errors
        return self.models


def log_entries(path: Path) -> list[dict[str, Any]]:
    """The structured (JSON) lines of a node's log; other lines (tracebacks, library noise) are skipped."""
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def quorum_counts(result: RunResult) -> dict[str, dict[str, dict[str, int]]]:
    """Each correct replica's quorum counts (docs/attacks.md), from its log's structured "done" line."""
    counts = {}
    for name, info in result.replicas.items():
        if info["byzantine"]:
            continue
        done = [e for e in log_entries(Path(info["log"])) if e.get("msg") == "done"]
        assert done, f"{name} wrote no done line: {info['exit']}"
        counts[name] = done[-1].get("quorums", {})
    return counts


def assert_attack_reached_every_quorum(result: RunResult) -> None:
    """The precondition of a resilience claim: every correct replica's quorum that could hold an
    attacker's reply did (aggregated, or refused), and there were such quorums. Without it an
    attack test could pass because the attackers were never heard."""
    counts = quorum_counts(result)
    attackable = sum(c["attackable"] for q in counts.values() for c in q.values())
    assert attackable > 0, counts
    missed = {name: q for name, q in counts.items() if any(c["attacked"] != c["attackable"] for c in q.values())}
    assert not missed, f"quorums without the attacker: {missed}"


def spread(models: dict[str, Any]) -> float:
    """Largest distance between two correct servers' models, relative to their mean norm."""
    import itertools

    import numpy as np

    vectors = list(models.values())
    assert len(vectors) >= 2
    widest = max(float(np.linalg.norm(a - b)) for a, b in itertools.combinations(vectors, 2))
    return widest / float(np.mean([np.linalg.norm(v) for v in vectors]))


def model_size(job: Job) -> int:
    """Parameter count of the job's model, from the user's own entry point."""
    from garfield.task import load_task

    task = load_task(job.spec.task.entrypoint, job.spec.task.args)
    return sum(p.numel() for p in task.model.parameters())


def run_with_final_models(job: Job, out: Path, timeout: float = 300) -> tuple[RunResult, dict[str, Any]]:
    """Run `job` and collect its correct servers' final models (probe started once they are planned)."""
    probe: list[FinalModels] = []

    def start_probe(_: str, __: dict[str, Any]) -> None:
        if probe:
            return
        import json

        table = json.loads((out / job.name / "replicas.json").read_text())
        servers = {n: info["address"] for n, info in table.items() if info["role"] == "server" and not info["byzantine"]}
        probe.append(FinalModels(servers, model_size(job), job.spec.training.steps))
        probe[0].start()

    result = run(job, out, timeout=timeout, on_status=start_probe)
    assert probe, "no server ever reported a status"
    return result, probe[0].join()
