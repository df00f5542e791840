"""Starting replicas from a process with live gRPC traffic (pytest, a notebook, the launcher itself).

The launcher used to arm each child's parent-death signal from a ``preexec_fn``: Python code run
between fork and exec in a copy of a process whose gRPC threads may hold locks, and some children
crashed at start. Children now start with no pre-exec hook and arm the signal themselves
(garfield.launcher.lifeline); these tests start many of them under gRPC load, directly and through
the fork server, and check that every one ran, exited 0 and had SIGKILL armed as its death signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from concurrent import futures
from pathlib import Path
from typing import Iterator

import grpc
import psutil
import pytest

from garfield.launcher import children, lifeline
from garfield.launcher.forkserver import ForkServer, Preload

CHILDREN = 60
CHILD_CODE = "import sys; from garfield.launcher import lifeline; print('pdeathsig', lifeline.death_signal()); sys.exit(0)"
METHOD = "/garfield.test.Echo/Echo"


class GrpcTraffic:
    """A gRPC server and client threads calling it in a loop until stopped."""

    def __init__(self, clients: int = 4, payload: int = 64 << 10) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handler = grpc.method_handlers_generic_handler(
            "garfield.test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, _context: request)})
        self.server.add_generic_rpc_handlers((handler,))
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.address = f"127.0.0.1:{port}"
        self.payload = os.urandom(payload)
        self.stop = threading.Event()
        self.calls = 0
        self.errors: list[BaseException] = []
        self.first_call = threading.Event()
        self.threads = [threading.Thread(target=self._hammer, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _hammer(self) -> None:
        with grpc.insecure_channel(self.address) as channel:
            echo = channel.unary_unary(METHOD)
            while not self.stop.is_set():
                try:
                    assert echo(self.payload, timeout=60) == self.payload
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    self.errors.append(exc)
                    return
                self.calls += 1
                self.first_call.set()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
        self.server.stop(grace=None)


@pytest.fixture
def traffic() -> Iterator[GrpcTraffic]:
    load = GrpcTraffic()
    assert load.first_call.wait(timeout=60), "the gRPC load never got going"
    try:
        yield load
    finally:
        load.close()


def _start_many(tmp_path: Path, forkserver: ForkServer | None = None) -> list[children.Child]:
    started = []
    for i in range(CHILDREN):
        started.append(children.spawn(name=f"c{i}", role="worker", index=i, byzantine=False,
                                      command=[sys.executable, "-c", CHILD_CODE], env=dict(os.environ),
                                      log_path=tmp_path / "logs" / f"c{i}.log", forkserver=forkserver))
    return started


def _check_all(started: list[children.Child], traffic: GrpcTraffic) -> None:
    codes = {c.name: c.popen.wait(timeout=120) for c in started}
    assert traffic.calls > 0 and not traffic.errors, traffic.errors[:1]
    failed = {name: (code, c.log_tail()) for (name, code), c in zip(codes.items(), started, strict=True) if code != 0}
    assert not failed, f"{len(failed)} of {len(started)} children failed: {dict(list(failed.items())[:3])}"
    armed = {c.name: c.log_path.read_text().strip() for c in started}
    assert all(text == f"pdeathsig {int(signal.SIGKILL)}" for text in armed.values()), armed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_children_started_under_grpc_load_all_run_and_arm_their_death_signal(tmp_path: Path,
                                                                             traffic: GrpcTraffic) -> None:
    _check_all(_start_many(tmp_path), traffic)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_fork_server_started_under_grpc_load_forks_healthy_children(tmp_path: Path, traffic: GrpcTraffic) -> None:
    with ForkServer(Preload(), log_path=tmp_path / "forkserver.log") as server:
        assert server.wait_ready(120)["grpc"] is False  # the test process has gRPC; the server must not
        _check_all(_start_many(tmp_path, server), traffic)


def test_spawn_uses_no_pre_exec_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The root cause itself: no Python may run between fork and exec in the launcher's children."""
    seen: list[dict] = []
    real = subprocess.Popen

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(children.subprocess, "Popen", recording)
    child = children.spawn(name="c", role="worker", index=0, byzantine=False, command=[sys.executable, "-c", "pass"],
                           env=dict(os.environ), log_path=tmp_path / "c.log")
    assert child.popen.wait(timeout=120) == 0
    assert seen and seen[0].get("preexec_fn") is None and seen[0].get("process_group") == 0
    assert seen[0]["env"][lifeline.ENV_PARENT_PID] == str(os.getpid())


def test_a_child_whose_launcher_is_already_gone_exits_at_once(tmp_path: Path) -> None:
    """GARFIELD_PARENT_PID names a process that is not the parent: the launcher died before the
    child armed its signal, so it must not run on as an orphan (garfield node and the lifeline runner)."""
    env = dict(os.environ, **{lifeline.ENV_PARENT_PID: str(psutil.Process().ppid() or 1)})
    for command in ([sys.executable, "-m", "garfield", "node"],
                    [sys.executable, "-m", "garfield.launcher.lifeline", "-c", "print('ran')"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == lifeline.ORPHANED_EXIT, (command, done.stdout, done.stderr)
        assert "ran" not in done.stdout and "GARFIELD_ROLE" not in done.stderr


def test_garfield_node_arms_its_own_death_signal_first() -> None:
    """The node arms the signal before reading its configuration (it then exits 2: no GARFIELD_ROLE)."""
    code = textwrap.dedent("""
        import os, sys
        from garfield.launcher import lifeline
        from garfield.node import main
        env = {lifeline.ENV_PARENT_PID: str(os.getppid())}
        status = main(env)
        print(status, lifeline.death_signal())
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", str(int(signal.SIGKILL))]


_DRIVER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from garfield.launcher import children
    from garfield.launcher.forkserver import ForkServer, Preload
    out = Path(sys.argv[1])
    server = ForkServer(Preload(), log_path=out / "forkserver.log") if sys.argv[2] == "fork" else None
    code = "import signal, sys; print('up', flush=True); signal.pause()"
    pids = []
    for i in range(4):
        child = children.spawn(name=f"c{i}", role="worker", index=i, byzantine=False,
                               command=[sys.executable, "-c", code], env=dict(os.environ),
                               log_path=out / f"c{i}.log", forkserver=server)
        pids.append(child.pid)
    extra = [server.process.pid] if server is not None else []
    (out / "pids.tmp").write_text(" ".join(map(str, pids + extra)))
    os.replace(out / "pids.tmp", out / "pids")
    signal.pause()
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize("mode", ["spawn", "fork"])
def test_sigkilled_launcher_takes_its_children_down(tmp_path: Path, mode: str) -> None:
    """The case no handler covers: the launcher SIGKILLed; its children (and a fork server) follow."""
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER, str(tmp_path), mode])
    try:
        pids_file = tmp_path / "pids"
        deadline_s = 120
        waited = 0.0
        while not pids_file.exists():  # an event (the driver's atomic rename), polled with a bound
            assert driver.poll() is None, "the driver died"
            assert waited < deadline_s, "the driver never started its children"
            try:
                driver.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                waited += 0.1
        pids = [int(p) for p in pids_file.read_text().split()]
        for i in range(4):  # every child really runs its command before the launcher is killed
            log = tmp_path / f"c{i}.log"
            _wait_for(lambda log=log: log.exists() and "up" in log.read_text(), driver)
        procs = [psutil.Process(pid) for pid in pids]
    finally:
        driver.kill()
        driver.wait()
    gone, alive = psutil.wait_procs(procs, timeout=60)
    for orphan in alive:  # the test failed: do not leave its orphans behind
        try:
            orphan.kill()
        except psutil.NoSuchProcess:
            pass
    assert not alive, f"outlived the launcher: {[p.pid for p in alive]}"


def _wait_for(condition, driver: subprocess.Popen, seconds: float = 120) -> None:  # type: ignore[no-untyped-def]
    waited = 0.0
    while not condition():
        assert driver.poll() is None and waited < seconds
        try:
            driver.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            waited += 0.1
