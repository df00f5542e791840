"""`python -m garfield node` as real processes configured only by the plan's environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from garfield.launcher import credentials
from garfield.node import main as node_main
from garfield.plan import Loopback, make_plan
from garfield.spec.validation import validate_manifest

import harness

HERE = Path(__file__).resolve().parent


def test_bad_environment_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert node_main({}) == 2
    assert "GARFIELD_ROLE is not set" in capsys.readouterr().err
    env = {"GARFIELD_ROLE": "worker", "GARFIELD_INDEX": "5", "GARFIELD_SPEC": "{}", "GARFIELD_JOB_NAME": "j",
           "GARFIELD_LISTEN": "127.0.0.1:1", "GARFIELD_WORKERS": "a:1,b:2"}
    assert node_main(env) == 2
    assert "GARFIELD_INDEX=5 but 2 worker addresses" in capsys.readouterr().err
    env["GARFIELD_INDEX"] = "0"
    assert node_main(env) == 2  # the node parses the spec with the rest of its configuration
    assert "GARFIELD_SPEC is not a normalised job spec" in capsys.readouterr().err
    env["GARFIELD_SPEC"] = "{not json"
    assert node_main(env) == 2
    assert "GARFIELD_SPEC is not JSON" in capsys.readouterr().err
    env["GARFIELD_ROLE"] = "parameter-server"
    assert node_main(env) == 2
    assert "GARFIELD_ROLE='parameter-server'; expected one of server, worker, peer" in capsys.readouterr().err


def _status(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_processes_train_and_survive_a_killed_worker(tmp_path: Path) -> None:
    job = validate_manifest(harness.manifest(1, 0, 4, 1, steps=400, eval_interval=100, rpc=3.0))
    ports = harness.free_ports(10)
    table = {("server", 0): {"grpc": ports[0], "metrics": ports[1]}}
    table.update({("worker", i): {"grpc": ports[2 + 2 * i], "metrics": ports[3 + 2 * i]} for i in range(4)})
    plan = make_plan(job, Loopback(table))
    credentials.issue_run(plan, tmp_path)  # each replica's TLS folder, as garfield run makes them
    procs: dict[str, subprocess.Popen] = {}
    try:
        for replica in plan.replicas:
            env = dict(os.environ, **replica.env, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
                       OMP_NUM_THREADS="1")
            log = open(tmp_path / f"{replica.name}.log", "w")
            procs[replica.name] = subprocess.Popen([sys.executable, "-m", "garfield", "node"], env=env, stderr=log,
                                                   stdout=log, start_new_session=True)
        metrics = table[("server", 0)]["metrics"]
        deadline = time.monotonic() + 90
        status: dict = {}
        while time.monotonic() < deadline:  # the test observes progress from outside, as the launcher does
            try:
                status = _status(metrics)
            except OSError:
                status = {}
            if status.get("step", 0) >= 30:
                break
            assert procs["t-server-0"].poll() is None, (tmp_path / "t-server-0.log").read_text()
            time.sleep(0.1)
        assert status.get("step", 0) >= 30, status
        assert status["phase"] == "running" and status["role"] == "server"
        os.kill(procs["t-worker-3"].pid, signal.SIGKILL)  # a crash, mid-run
        codes = {name: p.wait(timeout=120) for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    assert codes["t-worker-3"] == -signal.SIGKILL
    assert all(code == 0 for name, code in codes.items() if name != "t-worker-3"), codes
    lines = [json.loads(line) for line in (tmp_path / "t-server-0.log").read_text().splitlines() if line.startswith("{")]
    done = [entry for entry in lines if entry["msg"] == "done"]
    assert done and done[0]["step"] == 400 and done[0]["accuracy"] > 0.9
    assert all(entry["role"] == "server" and entry["job"] == "t" for entry in lines)
