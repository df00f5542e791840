"""A finished node leaves its final status as its container's termination message (what the
operator reports as the job's result once status endpoints are gone); outside a pod, nothing."""

from __future__ import annotations

import json
from pathlib import Path

from garfield.observability import termination


def test_written_only_where_the_file_exists(tmp_path: Path) -> None:
    missing = tmp_path / "no-termination-log"
    assert not termination.write_final({"step": 3}, str(missing)) and not missing.exists()
    log = tmp_path / "termination-log"
    log.write_text("")
    status = {"step": 200, "total_steps": 200, "accuracy": 0.91, "loss": float("nan"), "phase": "done",
              "rejected": {"stale": 1}, "timing": {"big": [1] * 10_000}, "job": "j"}
    assert termination.write_final(status, str(log))
    written = termination.parse(log.read_text())
    assert written == {"step": 200, "total_steps": 200, "accuracy": 0.91, "phase": "done", "rejected": {"stale": 1}}


def test_stays_within_the_kubelet_limit_and_parse_refuses_foreign_text() -> None:
    flood = {"step": 5, "accuracy": 0.5, "rejected": {f"reason-{i}": i for i in range(2000)}}
    message = termination.final_message(flood)
    assert len(message.encode()) <= termination.LIMIT and json.loads(message) == {"step": 5, "accuracy": 0.5}
    assert termination.parse("Error: OOMKilled") is None and termination.parse("[1, 2]") is None
    assert termination.parse("") is None
