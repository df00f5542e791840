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


def transport_security(result: RunResult) -> dict[str, str]:
    """How each replica served ("mutual" or "off"), from its log's structured "listening" line."""
    modes = {}
    for name, info in result.replicas.items():
        for entry in log_entries(Path(info["log"])):
            if entry.get("msg") == "listening":
                modes[name] = entry.get("tls")
    return modes


def run_with_final_models(job: Job, out: Path, timeout: float = 300) -> tuple[RunResult, dict[str, Any]]:
    """Run `job` and read back its correct servers' final models, as their user gets them: the
    exported state_dicts (spec.output), each flattened in its own key order into one vector.
    (Fetching them over the job's transport would need a key of the job: mutual TLS is there to
    refuse exactly such a reader.)"""
    import numpy as np
    import torch

    result = run(job, out, timeout=timeout)
    models = {}
    for name, manifest in result.models.items():
        state = torch.load(manifest["path"], weights_only=True)
        models[name] = np.concatenate([t.detach().cpu().numpy().ravel() for t in state.values()]).astype("float64")
    return result, models
