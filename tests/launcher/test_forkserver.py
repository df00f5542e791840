"""The preloaded fork server (garfield.launcher.forkserver): what a forked replica gets, what comes
back to the launcher, and what the server must never do (import gRPC before forking)."""

from __future__ import annotations

import copy
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from garfield.launcher import children, lifeline
from garfield.launcher.forkserver import TORCH_PRELOAD, ForkServer, ForkServerError, Preload
from garfield.launcher.local import launch
from garfield.spec.validation import load_job, validate_manifest

from support.processes import running

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork server and PDEATHSIG: Linux")

ROOT = Path(__file__).resolve().parents[2]
MSMW = ROOT / "examples" / "mnist-msmw.yaml"
FAKE = Path(__file__).with_name("fake_node.py")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ForkServer]:
    with ForkServer(Preload(), log_path=tmp_path / "forkserver.log") as started:
        started.wait_ready(120)
        yield started


def _fork(server: ForkServer, tmp_path: Path, code: str, name: str = "child", **env: str) -> children.Child:
    return children.spawn(name=name, role="worker", index=0, byzantine=False, command=[sys.executable, "-c", code],
                          env={**os.environ, **env}, log_path=tmp_path / f"{name}.log", forkserver=server)


def _wait_for_line(path: Path, text: str, child: children.Child, seconds: float = 120) -> None:
    """Until `text` shows in the child's log (the child's own signal that it is up), bounded."""
    waited = 0.0
    while not (path.exists() and text in path.read_text()):
        assert child.popen.poll() is None, f"{child.name} exited {child.popen.poll()}: {child.log_tail()}"
        assert waited < seconds, f"{child.name} never printed {text!r}"
        try:
            child.popen.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            waited += 0.1


def test_a_forked_child_runs_its_target_and_its_exit_code_and_log_come_back(server: ForkServer, tmp_path: Path) -> None:
    code = "import os, sys; print('hello from', os.environ['WHO'], os.getcwd()); print('oops', file=sys.stderr); sys.exit(7)"
    child = _fork(server, tmp_path, code, WHO="replica-3")
    assert child.popen.wait(timeout=120) == 7
    assert child.reap() == 7 and child.describe_exit() == "exit 7"
    log = child.log_path.read_text()
    assert f"hello from replica-3 {os.getcwd()}" in log and "oops" in log
    script = tmp_path / "target.py"
    script.write_text("import sys\nprint('script', sys.argv[1:])\nraise SystemExit(3)\n")
    ran = children.spawn(name="script", role="worker", index=1, byzantine=False,
                         command=[sys.executable, str(script), "a", "b"], env=dict(os.environ),
                         log_path=tmp_path / "script.log", forkserver=server)
    assert ran.popen.wait(timeout=120) == 3
    assert "script ['a', 'b']" in ran.log_path.read_text()
    module = children.spawn(name="module", role="worker", index=2, byzantine=False,
                            command=[sys.executable, "-m", "json.tool", "--help"], env=dict(os.environ),
                            log_path=tmp_path / "module.log", forkserver=server)
    assert module.popen.wait(timeout=120) == 0 and "json.tool" in module.log_path.read_text()


def test_an_uncaught_exception_exits_1_with_its_traceback(server: ForkServer, tmp_path: Path) -> None:
    child = _fork(server, tmp_path, "raise RuntimeError('boom')")
    assert child.popen.wait(timeout=120) == 1
    assert "RuntimeError: boom" in child.log_path.read_text()


def test_a_forked_child_leads_its_own_group_and_dies_with_the_server(server: ForkServer, tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import os, signal
        from garfield.launcher import lifeline
        print('group', os.getpgid(0), 'pid', os.getpid(), 'parent', os.getppid(), 'sig', lifeline.death_signal(),
              'env', os.environ['GARFIELD_PARENT_PID'], flush=True)
        signal.pause()
    """)
    child = _fork(server, tmp_path, code)
    _wait_for_line(child.log_path, "group", child)
    words = child.log_path.read_text().split()
    fields = dict(zip(words[::2], words[1::2], strict=False))
    assert int(fields["group"]) == child.pid == int(fields["pid"])  # its own process group
    assert int(fields["parent"]) == server.process.pid == int(fields["env"])
    assert int(fields["sig"]) == signal.SIGKILL
    assert os.getpgid(child.pid) != os.getpgid(0)
    # supervision as for any child: SIGTERM to the group, the status comes back as Popen's would
    children.stop([child], grace=60)
    assert child.popen.returncode == -signal.SIGTERM and child.describe_exit() == "killed by SIGTERM"


def test_stopping_the_server_kills_the_children_it_forked(tmp_path: Path) -> None:
    server = ForkServer(Preload(), log_path=tmp_path / "forkserver.log")
    child = _fork(server, tmp_path, "import signal; print('up', flush=True); signal.pause()")
    _wait_for_line(child.log_path, "up", child)
    server.close()
    assert child.popen.wait(timeout=60) == -signal.SIGKILL
    assert not running(child.pid)


def test_grpc_is_never_imported_in_the_server_before_it_forks(tmp_path: Path) -> None:
    """The full preload of a PyTorch job (torch, rules, task, data): still no gRPC and one thread."""
    spec = load_job(MSMW).spec.to_dict()
    with ForkServer(Preload(modules=TORCH_PRELOAD, spec=spec), log_path=tmp_path / "forkserver.log") as server:
        info = server.wait_ready(300)
        assert info["grpc"] is False and info["failed"] == {}, info
        assert info["os_threads"] == 1, info  # fork copies one thread: nothing else may hold a lock
        assert set(info["rules"]) == {"median", "mda"}
        code = "import sys; print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith('grpc.')), 'torch' in sys.modules)"
        child = _fork(server, tmp_path, code)
        assert child.popen.wait(timeout=120) == 0
        assert child.log_path.read_text().split() == ["[]", "True"]  # the server's modules, as the fork saw them


def test_a_preload_that_pulls_in_grpc_is_refused(tmp_path: Path) -> None:
    with ForkServer(Preload(modules=("grpc",)), log_path=tmp_path / "forkserver.log") as server:
        with pytest.raises(ForkServerError, match="grpc"):
            server.spawn([sys.executable, "-c", "pass"], dict(os.environ), tmp_path / "c.log", timeout=120)


def test_the_launcher_falls_back_to_fresh_processes_when_the_server_is_unusable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from garfield.launcher import local

    monkeypatch.setattr(local, "preload_for", lambda *a: Preload(modules=("grpc",)))
    monkeypatch.setenv("FAKE_NODE", "{}")
    stream = io.StringIO()
    result = launch(load_job(MSMW), tmp_path / "run", steps=20, progress="lines", stream=stream,
                    command=lambda r: [sys.executable, str(FAKE)], grace=2.0, fork_server=True)
    assert result.outcome == "succeeded", result.message
    assert "fork server unusable" in stream.getvalue()


def test_launch_forks_replicas_from_the_server_and_supervises_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in nodes run as children of the fork server, not of the launcher, and the run's
    outcome, exit statuses and clean-up are what they are with fresh processes."""
    monkeypatch.setenv("FAKE_NODE", json.dumps({"mnist-msmw-worker-5": "crash"}))
    # One step per /status read: the servers cannot finish before the launcher's first read, which
    # is when on_status records the parents (unpaced, a starved launcher could miss every step).
    monkeypatch.setenv("FAKE_NODE_PACE", "read")
    parents: dict[str, int] = {}

    def on_status(name: str, _status: dict) -> None:
        if not parents:
            table = json.loads((tmp_path / "run" / "replicas.json").read_text())
            for replica, info in table.items():
                try:
                    parents[replica] = psutil.Process(info["pid"]).ppid()
                except psutil.NoSuchProcess:
                    parents[replica] = -1

    job = load_job(MSMW)
    manifest = copy.deepcopy(job.manifest)
    manifest["spec"]["runPolicy"]["restartPolicy"] = "Never"  # the crashed worker stays down
    result = launch(validate_manifest(manifest), tmp_path / "run", steps=3, progress="none",
                    command=lambda r: [sys.executable, str(FAKE)], grace=2.0, on_status=on_status, fork_server=True)
    assert result.outcome == "succeeded", result.message
    assert result.replicas["mnist-msmw-worker-5"]["exit"] == "exit 3"
    assert result.replicas["mnist-msmw-server-0"]["exit"] == "exit 0"
    assert result.replicas["mnist-msmw-worker-0"]["stopped_by_launcher"] is True
    live = {name: ppid for name, ppid in parents.items() if ppid > 0}
    assert live and os.getpid() not in live.values() and len(set(live.values())) == 1, parents
    server_log = tmp_path / "run" / "logs" / "forkserver.log"
    assert server_log.exists()
    for info in result.replicas.values():
        assert not running(info["pid"])


def test_fork_server_is_on_by_default_and_off_with_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from garfield.launcher import forkserver

    monkeypatch.delenv(forkserver.ENV_FORK_SERVER, raising=False)
    assert forkserver.enabled()
    monkeypatch.setenv(forkserver.ENV_FORK_SERVER, "0")
    assert not forkserver.enabled()
    assert lifeline.runnable([sys.executable, "-m", "garfield", "node"])
    assert not lifeline.runnable(["/bin/sh", "-c", "true"])


def test_compiled_kernels_are_cached_on_disk_in_the_garfield_cache_folder(tmp_path: Path) -> None:
    """cache=True kernels land in $GARFIELD_CACHE_DIR/numba (NUMBA_CACHE_DIR's default here) and a
    second process loads them from there instead of compiling them again."""
    code = textwrap.dedent("""
        import json, torch
        from garfield.aggregators import _kernels as K, aggregate
        aggregate("median", torch.randn(5, 64), 1)
        stats = K.coordinate_kernel.stats
        print(json.dumps({"dir": K.numba.config.CACHE_DIR, "hits": sum(stats.cache_hits.values()),
                          "misses": sum(stats.cache_misses.values())}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["GARFIELD_CACHE_DIR"] = str(tmp_path)
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert runs[0]["dir"] == str(tmp_path / "numba")
    assert runs[0]["misses"] == 1 and runs[0]["hits"] == 0  # compiled, and written to the cache
    assert any((tmp_path / "numba").rglob("*.nbi"))
    assert runs[1]["hits"] == 1 and runs[1]["misses"] == 0  # loaded from it
