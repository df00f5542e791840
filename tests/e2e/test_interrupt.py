"""Ctrl-C on a real `garfield run` leaves no process behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from garfield.launcher.status import fetch_status

from e2e.jobs import EXAMPLES

pytestmark = pytest.mark.slow


def test_sigint_to_garfield_run_stops_every_node(tmp_path: Path) -> None:
    out = tmp_path / "run"
    launcher = subprocess.Popen([sys.executable, "-m", "garfield", "run", str(EXAMPLES / "mnist-ssmw.yaml"),
                                 "--output-dir", str(out), "--no-progress", "--steps", "100000"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        replicas: dict = {}
        while time.monotonic() < deadline and launcher.poll() is None:
            if (out / "replicas.json").exists():
                replicas = json.loads((out / "replicas.json").read_text())
                status = fetch_status(replicas["mnist-ssmw-server-0"]["ports"]["metrics"])
                if status and int(status.get("step") or 0) > 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail(f"training never started: {launcher.poll()} {launcher.stdout.read() if launcher.stdout else ''}")
        pids = [info["pid"] for info in replicas.values()]
        processes = [psutil.Process(p) for p in pids]
        launcher.send_signal(signal.SIGINT)
        output, _ = launcher.communicate(timeout=180)
        assert launcher.returncode == 130, output
        gone, alive = psutil.wait_procs(processes, timeout=120)
        assert alive == [], [p.pid for p in alive]
        assert json.loads((out / "summary.json").read_text())["outcome"] == "interrupted"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
