"""Checkpoints and resume under `garfield run` (spec.checkpoint), with real nodes on loopback.

A correct server SIGKILLed mid-run, once a checkpoint of it exists, is restarted by the launcher
(runPolicy OnFailure, as the operator recreates its pod), resumes from its checkpoint and rejoins;
a job whose only server died is run again in the same folder and resumes instead of starting at
step 0. Sized for 2 shared cores: an MLP on the shipped MNIST split, no attack, a few hundred
steps in all (about a minute each). Every wait is on an event (a status, a file, a log line).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

from garfield.observability.checkpoints import CheckpointStore

from e2e.jobs import DELETE, accuracies, exported_accuracy, log_entries, run, variant


def checkpoint_steps(models: Path, replica: str) -> list[int]:
    return CheckpointStore(models / replica / "checkpoints", keep=1).steps()


def entries(path: Path, msg: str) -> list[dict[str, Any]]:
    return [e for e in log_entries(path) if e.get("msg") == msg]


def kill_on_first_checkpoint(out: Path, replica: str, victim: str, killed: list[int],
                             stop: threading.Event) -> None:
    """SIGKILL `victim` as soon as its first checkpoint's manifest (written last) appears: watched
    every 10 ms, not on the launcher's once-a-second status, which a 120-step job on idle cores
    can finish inside of (it did: the kill then came after step 100, or not at all)."""
    while not stop.is_set():
        steps = checkpoint_steps(out / "models", replica)
        if steps:
            try:
                pid = int(json.loads((out / "replicas.json").read_text())[victim]["pid"])
            except (OSError, ValueError, KeyError):  # the launcher is (re)writing its table: look again
                stop.wait(0.01)
                continue
            os.kill(pid, signal.SIGKILL)
            killed.append(steps[0])
            return
        stop.wait(0.01)


def test_a_killed_correct_server_resumes_from_its_checkpoint_and_the_job_completes(tmp_path: Path) -> None:
    job = variant("mnist-msmw.yaml", "e2e-resume", {
        "workers": {"replicas": 3, "byzantine": 0, "gar": {"name": "average"}},
        "training": {"steps": 120, "evaluationInterval": 0},
        "checkpoint": {"everySteps": 20, "keep": 2},
        "attack": DELETE,
    })
    out = tmp_path / job.name
    models = out / "models"
    victim = "e2e-resume-server-1"
    at_kill: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_on_first_checkpoint, args=(out, "server-1", victim, at_kill, stop), daemon=True)
    killer.start()
    try:
        result = run(job, tmp_path)
    finally:
        stop.set()
        killer.join()
    assert at_kill, "training finished before a checkpoint of server-1 existed"
    assert result.outcome == "succeeded", result.message
    assert result.replicas[victim]["restarts"] == 1, result.replicas[victim]
    logs = out / "logs"
    # (the first run's checkpoint is the file at_kill saw; its log line may not have been written:
    # the kill can land between the manifest's rename and the "checkpoint written" line)
    assert (logs / f"{victim}.1.log").is_file() and at_kill[0] >= 20, at_kill
    (resumed,) = entries(logs / f"{victim}.log", "resumed from checkpoint")
    assert resumed["step"] >= at_kill[0], (resumed, at_kill)
    # it rejoined: it finished training with the others and exported a model as good as theirs
    assert result.replicas[victim]["exit"] == "exit 0", result.replicas[victim]
    assert result.models[victim]["step"] == 120
    assert result.models[victim]["resumed_from"] == resumed["step"]  # the model's manifest says so too
    assert all(result.models[f"e2e-resume-server-{i}"]["resumed_from"] is None for i in (0, 2, 3))
    assert len(result.final_accuracy) == 4 and min(accuracies(result)) >= 0.80, result.final_accuracy
    # Byzantine replicas aside (none here), every correct server wrote its own, the last 2 kept
    for name in ("server-0", "server-2", "server-3"):
        assert len(checkpoint_steps(models, name)) == 2, name


def test_a_job_run_again_after_a_failure_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    """SSMW: the only server is killed once a checkpoint exists, so the job fails (f=0); the same
    job run again in the same folder (its steps raised, as a user extending a run would) starts
    from that checkpoint, not step 0, and completes. The first run is given far more steps than it
    can train before the kill, so the kill never races the end of training (a status is read once
    a second, and 100 SSMW steps can take about that)."""
    def job_of(steps: int) -> Any:
        return variant("mnist-ssmw.yaml", "e2e-rerun", {
            "workers": {"replicas": 3, "byzantine": 0, "gar": {"name": "average"}},
            "training": {"steps": steps, "evaluationInterval": 0},
            "checkpoint": {"everySteps": 20, "keep": 2},
            "attack": DELETE,
        })
    out = tmp_path / "e2e-rerun"
    models = out / "models"
    at_kill: list[int] = []

    def kill_after_a_checkpoint(name: str, status: dict[str, Any]) -> None:
        steps = checkpoint_steps(models, "server-0")
        if at_kill or not steps:
            return
        os.kill(json.loads((out / "replicas.json").read_text())[name]["pid"], signal.SIGKILL)
        at_kill.append(max(steps))

    failed = run(job_of(1_000_000), tmp_path, on_status=kill_after_a_checkpoint)
    assert at_kill and failed.outcome == "failed", failed.message
    newest = max(checkpoint_steps(models, "server-0"))  # written before the kill was seen, at the latest
    total = newest + 60
    job = job_of(total)
    result = run(job, tmp_path)
    assert result.outcome == "succeeded", result.message
    (resumed,) = entries(out / "logs" / "e2e-rerun-server-0.log", "resumed from checkpoint")
    assert resumed["step"] == newest >= at_kill[0] >= 20
    (manifest,) = result.models.values()
    assert manifest["step"] == total
    assert accuracies(result)[0] >= 0.80, result.final_accuracy
    assert abs(exported_accuracy(job, manifest) - accuracies(result)[0]) <= 0.005, manifest
