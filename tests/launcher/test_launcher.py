"""The local launcher's supervision with stand-in nodes (tests/launcher/fake_node.py): outcome rules,
summary, progress output, port picking, and that no child process ever outlives a run."""

from __future__ import annotations

import copy
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

from garfield.cli import main as cli_main
from garfield.launcher.local import launch
from garfield.launcher.ports import free_ports, loopback_table
from garfield.spec.validation import load_job, validate_manifest

from support.processes import running

ROOT = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_node.py")
MSMW = ROOT / "examples" / "mnist-msmw.yaml"


def fake_command(replica) -> list[str]:
    return [sys.executable, str(FAKE)]


def run_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behaviour: dict[str, str] | None = None,
             steps: int = 40, run_policy: dict[str, Any] | None = None, attack: bool = True, **kwargs):
    monkeypatch.setenv("FAKE_NODE", json.dumps(behaviour or {}))
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    monkeypatch.setenv("FAKE_NODE_MARKS", str(marks))
    stream = io.StringIO()
    job = load_job(MSMW)
    if run_policy or not attack:
        manifest = copy.deepcopy(job.manifest)
        manifest["spec"]["runPolicy"].update(run_policy or {})
        if not attack:
            manifest["spec"].pop("attack")
        job = validate_manifest(manifest)
    result = launch(job, tmp_path / "run", steps=steps, progress="lines", stream=stream,
                    command=fake_command, grace=kwargs.pop("grace", 2.0), **kwargs)
    return result, stream.getvalue()


def assert_all_gone(result) -> None:
    for name, info in result.replicas.items():
        assert not running(info["pid"]), name


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    for port in ports[:3]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
    table = loopback_table({"server": 2, "worker": 3})
    used = [p for entry in table.values() for p in entry.values()]
    assert len(table) == 5 and len(set(used)) == 10


def test_successful_run_summary_and_cleanup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, out = run_fake(tmp_path, monkeypatch)
    assert result.outcome == "succeeded" and result.exit_code == 0, result.message
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # 4 servers, the last one Byzantine: only the 3 correct ones are reported.
    assert sorted(summary["final_accuracy"]) == [f"mnist-msmw-server-{i}" for i in range(3)]
    # the final accuracy comes from each server's "done" log line, whatever /status said last
    assert summary["final_accuracy"]["mnist-msmw-server-2"] == pytest.approx(0.952)
    assert summary["rejected"] == {"stale": 0 + 1 + 2} and summary["rejected_total"] == 3
    assert summary["total_steps"] == 40 and summary["steps"] == 40
    assert len(summary["replicas"]) == 11
    assert summary["replicas"]["mnist-msmw-worker-6"]["byzantine"] is True
    assert summary["replicas"]["mnist-msmw-server-0"]["exit"] == "exit 0"
    # workers never finish on their own: the launcher stopped them, which is not a crash
    assert summary["replicas"]["mnist-msmw-worker-0"]["stopped_by_launcher"] is True
    assert not any(r["crashed"] for r in summary["replicas"].values())
    assert (tmp_path / "run" / "logs" / "mnist-msmw-worker-3.log").read_text().startswith("mnist-msmw-worker-3 listening")
    pids = json.loads((tmp_path / "run" / "replicas.json").read_text())
    assert {info["pid"] for info in pids.values()} == {info["pid"] for info in summary["replicas"].values()}
    assert "step" in out and "steps/s" in out and "succeeded" in out and "\r" not in out
    assert_all_gone(result)


def test_live_bar_redraws_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step is redrawn in place on one terminal line, then the summary follows on its own lines."""
    monkeypatch.setenv("FAKE_NODE", "{}")
    monkeypatch.setenv("FAKE_NODE_PACE", "read")  # one step per status read: the bar sees each step
    stream = io.StringIO()
    result = launch(load_job(MSMW), tmp_path / "run", steps=3, progress="bar", stream=stream, command=fake_command)
    assert result.outcome == "succeeded"
    out = stream.getvalue()
    header, *frames, last = out.split("\r\x1b[2K")
    assert header.endswith("\n") and "11 replicas" in header
    assert frames and all("\n" not in f for f in frames), "redraws must stay on one line"
    shown = {m.group(1) for f in [*frames, last] if (m := re.search(r"\] step (\d+)/3", f))}
    assert {"1", "2", "3"} <= shown, shown
    assert out.rstrip().endswith("messages rejected")


def test_byzantine_exits_and_up_to_f_crashes_do_not_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    behaviour = {"mnist-msmw-server-3": "crash", "mnist-msmw-worker-6": "crash", "mnist-msmw-worker-5": "crash"}
    result, _ = run_fake(tmp_path, monkeypatch, behaviour, run_policy={"restartPolicy": "Never"})
    assert result.outcome == "succeeded", result.message
    assert result.replicas["mnist-msmw-worker-5"]["exit"] == "exit 3"
    assert result.replicas["mnist-msmw-worker-5"]["restarts"] == 0


def test_a_crashed_server_is_restarted_under_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """runPolicy OnFailure (the default): the crashed correct server (one of f=1, no attackers) is
    started again, as the operator recreates its pod, and finishes; its first log is kept."""
    result, _ = run_fake(tmp_path, monkeypatch, {"mnist-msmw-server-1": "crash-once"}, attack=False)
    assert result.outcome == "succeeded", result.message
    server = result.replicas["mnist-msmw-server-1"]
    assert server["restarts"] == 1 and server["exit"] == "exit 0", server
    logs = tmp_path / "run" / "logs"
    assert "simulated crash (first start)" in (logs / "mnist-msmw-server-1.1.log").read_text()
    assert "mnist-msmw-server-1: started again" in (logs / "mnist-msmw-server-1.log").read_text().splitlines()
    assert json.loads((tmp_path / "run" / "replicas.json").read_text())["mnist-msmw-server-1"]["pid"] == server["pid"]


def test_restarts_beyond_the_backoff_limit_fail_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = run_fake(tmp_path, monkeypatch, {"mnist-msmw-server-1": "crash-once"}, steps=100_000,
                         run_policy={"backoffLimit": 0}, attack=False)
    assert result.outcome == "failed", result.message
    assert result.message == ("0 restarts so far; restarting mnist-msmw-server-1 (exit 3) would exceed "
                              "runPolicy.backoffLimit=0")
    assert result.replicas["mnist-msmw-server-1"]["restarts"] == 0
    assert_all_gone(result)


def test_more_than_f_crashes_fail_with_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 Byzantine workers already use up f=2: one correct worker crashing breaks the promise.
    result, _ = run_fake(tmp_path, monkeypatch, {"mnist-msmw-worker-0": "crash"}, steps=100_000)
    assert result.outcome == "failed" and result.exit_code == 1
    assert "mnist-msmw-worker-0 exit 3" in result.message and "simulated crash" in result.message
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["outcome"] == "failed"
    assert_all_gone(result)


def test_failure_message_quotes_the_nodes_structured_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = run_fake(tmp_path, monkeypatch, {"mnist-msmw-server-0": "fail", "mnist-msmw-server-1": "fail"},
                         steps=100_000)
    assert result.outcome == "failed"
    assert "exit 1: failed: QuorumError: 4 of 7 left (log: " in result.message
    assert "CancelledError" not in result.message


def test_timeout_kills_children_that_ignore_sigterm_and_their_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    behaviour = {"mnist-msmw-server-0": "hang", "mnist-msmw-worker-1": "ignore-term", "mnist-msmw-worker-2": "grandchild"}
    # timeout: long enough for every stand-in to set up its behaviour first, even on a loaded machine
    result, _ = run_fake(tmp_path, monkeypatch, behaviour, steps=100_000, timeout=10, grace=1.0)
    assert result.outcome == "timeout" and result.exit_code == 1
    assert result.replicas["mnist-msmw-worker-1"]["exit"] == "killed by SIGKILL"
    log = (tmp_path / "run" / "logs" / "mnist-msmw-worker-2.log").read_text()
    grandchild = int(log.split("grandchild ")[1].split()[0])
    wait_until(lambda: not psutil.pid_exists(grandchild), "the killed grandchild reaped by init")
    assert_all_gone(result)


_DRIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from garfield.launcher.local import launch
    from garfield.spec.validation import load_job
    res = launch(load_job(sys.argv[1]), Path(sys.argv[2]), steps=100_000, progress="none",
                 command=lambda r: [sys.executable, sys.argv[3]], grace=1.0)
    sys.exit(res.exit_code)
""")


def _start_driver(tmp_path: Path) -> tuple[subprocess.Popen, dict]:
    out = tmp_path / "run"
    env = dict(os.environ, FAKE_NODE="{}")
    launcher = subprocess.Popen([sys.executable, "-c", _DRIVER, str(MSMW), str(out), str(FAKE)], env=env)
    table = out / "replicas.json"  # written atomically by the launcher once every child is started
    wait_until(lambda: table.exists() or launcher.poll() is not None, "the launcher's replica table")
    assert launcher.poll() is None, f"launcher exited {launcher.returncode}"
    replicas = json.loads(table.read_text())

    def all_listening() -> bool:  # each stand-in prints "<name> listening" once its handlers are set
        return all(f"{name} listening" in Path(info["log"]).read_text(errors="replace") for name, info in replicas.items())

    wait_until(lambda: all_listening() or launcher.poll() is not None, "every stand-in listening")
    assert launcher.poll() is None, f"launcher exited {launcher.returncode}"
    return launcher, replicas


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Poll `condition` until it holds; fail naming `what` after a generous `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(0.05)


def _wait_gone(pids: list[int], seconds: float = 120) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if running(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_launcher_stops_every_child(tmp_path: Path, sig: signal.Signals) -> None:
    launcher, replicas = _start_driver(tmp_path)
    pids = [info["pid"] for info in replicas.values()]
    assert all(psutil.pid_exists(p) for p in pids)
    launcher.send_signal(sig)
    assert launcher.wait(timeout=120) == 130
    assert _wait_gone(pids) == []
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["outcome"] == "interrupted"


def test_sigkilled_launcher_leaves_no_orphans(tmp_path: Path) -> None:
    launcher, replicas = _start_driver(tmp_path)
    pids = [info["pid"] for info in replicas.values()]
    launcher.kill()
    launcher.wait()
    assert _wait_gone(pids) == []


def test_cli_rejects_an_invalid_job_with_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MSMW.read_text().replace("byzantine: 2", "byzantine: 3"))
    code = cli_main(["run", str(bad), "--output-dir", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    assert "spec.workers" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert cli_main(["run", str(tmp_path / "missing.yaml")]) == 2
