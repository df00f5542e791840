"""Every node's "done" log line carries its step timing (what `garfield report` splits into
communication, aggregation and computation, workers included)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from garfield.report.grid import Knobs, manifest
from garfield.report.jobs import log_facts
from garfield.simulate import simulate
from garfield.spec.validation import load_job


def test_done_lines_carry_each_nodes_timing(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(manifest("timing", Knobs(workers=4, f_w=1, gar="median", steps=8, eval_interval=0))))
    result = simulate(load_job(path), tmp_path / "out", progress="none")
    assert result.outcome == "succeeded"
    lines = [json.loads(line) for line in (tmp_path / "out" / "logs" / "simulation.log").read_text().splitlines()]
    done = [e for e in lines if e["msg"] == "done"]
    assert sorted((e["role"], e["index"]) for e in done) == [("server", 0)] + [("worker", i) for i in range(4)]
    for entry in done:
        timing = entry["timing"]
        assert set(timing) == {"communication", "aggregation", "computation", "steps", "share"}
        assert timing["steps"] >= 7 and all(timing[k] >= 0 for k in ("communication", "aggregation", "computation"))
        assert abs(sum(timing["share"].values()) - 1) < 1e-6
    server = next(e for e in done if e["role"] == "server")["timing"]
    workers = [e["timing"] for e in done if e["role"] == "worker"]
    assert server["aggregation"] > 0  # the median ran on the server
    assert all(w["computation"] > 0 for w in workers)  # the gradients were computed on the workers


def test_log_facts_reads_roles_speed_and_first_step_cpu(tmp_path: Path) -> None:
    def line(**fields: object) -> str:
        return json.dumps(fields)

    timing = {"communication": 0.5, "aggregation": 0.01, "computation": 0.02, "steps": 10}
    (tmp_path / "j-server-0.log").write_text("\n".join([
        line(msg="first step", ts=100.0, step=1, role="server", byzantine=False, cpu_seconds=1.5),
        line(msg="done", ts=101.0, step=11, role="server", byzantine=False, timing=timing)]))
    (tmp_path / "j-worker-0.log").write_text("\n".join([
        line(msg="first step", ts=100.0, step=1, role="worker", byzantine=False, cpu_seconds=1.0),
        line(msg="done", ts=101.0, step=11, role="worker", byzantine=False, timing=dict(timing, computation=0.04))]))
    (tmp_path / "j-worker-1.log").write_text(line(msg="done", ts=101.0, step=11, role="worker", byzantine=True,
                                                  timing=dict(timing, computation=9.0)))
    facts = log_facts(tmp_path, "server")
    assert facts["steps_per_second"] == 10.0  # 10 steps from the first step to done, in 1 s
    # the server's communication is its step time (0.1 s) less aggregation and computation: the
    # start-up wait inside the logged 0.5 s is left out
    assert abs(facts["roles"]["server"]["communication"] - 0.07) < 1e-9
    assert facts["roles"]["worker"]["computation"] == 0.04  # the Byzantine worker is left out
    assert facts["first_cpu"] == {"j-server-0": 1.5, "j-worker-0": 1.0}
