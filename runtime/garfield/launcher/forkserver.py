"""A preloaded fork server: pay torch's, numba's and the data's start-up once per run, not per replica.

Why: every replica of a local run used to be a fresh ``python -m garfield node`` that imports
torch and numba, loads the compiled aggregation kernels and parses the task's data:
seconds of CPU each, 11 times over on a 2-core laptop, before the first step can happen. The fork
server is one process, started cleanly (no pre-exec hook: see :mod:`garfield.launcher.lifeline`),
that imports all of that once, warms the job's aggregation rules and task, and then forks one
child per replica. A fork shares the warmed memory copy-on-write, so a replica is up in the time
it takes to import gRPC and open its sockets.

What it must not do: import gRPC (or start any thread) before forking. gRPC's core is not
fork-safe; it is imported by each child, after the fork, with the node's own modules. The server
reports whether ``grpc`` ended up in ``sys.modules`` during the preload (a user's task module could
import it) and how many threads it runs; if either is unsafe the launcher falls back to starting
replicas as fresh processes. CUDA is never touched either (a CUDA context does not survive a fork).

Each child: its own process group (``setpgid``, done on both sides of the fork, so the launcher's
``killpg`` works at once), stdin from /dev/null, stdout+stderr to its own log file, the
environment and working directory of the replica, default signal dispositions, and
``PR_SET_PDEATHSIG``: the server dies with the launcher (it armed the signal itself) and each child
dies with the server, so killing the launcher still takes every replica down. The server reaps its
children and reports each exit status (Popen's convention: negative = killed by that signal) to the
launcher, where :class:`ForkedProcess` offers the part of ``subprocess.Popen`` that
:mod:`garfield.launcher.children` uses, so its supervision does not change.

The launcher <-> server messages are in :mod:`garfield.launcher.forkwire`, the preload in
:mod:`garfield.launcher.forkpreload`, the server's loop and the child side in :mod:`garfield.launcher.forkserve`;
this module is the launcher's handle and the server's command line.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from garfield.launcher import lifeline
from garfield.launcher.forkpreload import warm_rules
from garfield.launcher.forkserve import serve
from garfield.launcher.forkwire import decode, encode

ENV_FORK_SERVER = "GARFIELD_FORK_SERVER"  # "0" disables the fork server (fresh processes per replica)

# What every PyTorch replica imports, in dependency order; grpc-free by construction
# (garfield.proto, garfield.transport and garfield.protocol import grpc: they load after the fork).
TORCH_PRELOAD: tuple[str, ...] = (
    "numpy", "torch", "torch.nn", "torch.optim", "torch.utils.data", "numba", "prometheus_client",
    "google.protobuf", "google.protobuf.message", "google.protobuf.descriptor_pool", "yaml",
    "garfield.spec.model", "garfield.spec.validation", "garfield.plan.replicas", "garfield.task",
    "garfield.adapters", "garfield.adapters.pytorch", "garfield.aggregators", "garfield.aggregators.api",
    "garfield.aggregators._backend", "garfield.aggregators._kernels", "garfield.attacks",
    "garfield.observability.state", "garfield.observability.http", "garfield.observability.logs",
    "garfield.data.mnist", "garfield.data.torchdata", "garfield.node", "garfield.cli", "garfield.launcher.lifeline",
)


@dataclass
class Preload:
    """What the server imports and warms before its first fork."""

    modules: Sequence[str] = ()
    spec: dict[str, Any] | None = None  # a job spec (spec.model dict): warm its task and its rules
    threads: int = 1

    def to_message(self) -> dict[str, Any]:
        return {"op": "preload", "modules": list(self.modules), "spec": self.spec, "threads": self.threads}


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """The fork server is the default; GARFIELD_FORK_SERVER=0 (or "false", "no", "off") turns it off."""
    value = (os.environ if env is None else env).get(ENV_FORK_SERVER, "1").strip().lower()
    return value not in ("0", "false", "no", "off")


class ForkServerError(RuntimeError):
    """The fork server died, refused a request, or cannot fork safely (gRPC got imported)."""


class ForkedProcess:
    """A replica forked by the server, with the part of `subprocess.Popen` the supervisor uses.

    The launcher is not its parent, so it cannot `waitpid` it: the exit status arrives from the
    server. Signals go straight to the process (`kill`), or to its group (`os.killpg`, the pid).
    """

    def __init__(self, pid: int, args: Sequence[str]) -> None:
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None
        self._done = threading.Event()

    def _exited(self, returncode: int) -> None:
        if self.returncode is None:
            self.returncode = returncode
            self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The launcher's handle on one fork server process (one per run).

    Starting returns at once; the server imports and warms in the background while the launcher
    plans, and the first :meth:`spawn` waits for it to be ready. `on_exit` callbacks run (on the
    reader thread) whenever a child's exit status arrives: the supervisor wakes on them as it wakes
    on SIGCHLD for its own children.
    """

    def __init__(self, preload: Preload, log_path: Path | None = None, env: Mapping[str, str] | None = None,
                 python: str = sys.executable) -> None:
        self.on_exit: list[Callable[[ForkedProcess], None]] = []
        self.ready_info: dict[str, Any] | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, tuple[threading.Event, dict[str, Any]]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._next_id = 0
        self._closed = False
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        server_env = dict(os.environ if env is None else env)
        server_env[lifeline.ENV_PARENT_PID] = str(os.getpid())
        server_env["PYTHONUNBUFFERED"] = "1"  # children inherit the interpreter's stdio buffering
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            server_env.setdefault(var, str(preload.threads))
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "wb", buffering=0) if log_path is not None else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [python, "-u", "-m", "garfield.launcher.forkserver", "--fd", str(theirs.fileno())],
                env=server_env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(theirs.fileno(),), close_fds=True, process_group=0)
        finally:
            theirs.close()
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        self._sock = ours
        self._file = ours.makefile("rb")
        self._send(preload.to_message())
        self._reader = threading.Thread(target=self._read_loop, name="garfield-forkserver", daemon=True)
        self._reader.start()

    # -- messages ----------------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        data = encode(message)
        with self._send_lock:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise ForkServerError(f"the fork server is gone: {exc}") from None

    def _read_loop(self) -> None:
        for line in self._file:
            try:
                message = decode(line)
            except ValueError:
                continue
            if "ready" in message:
                self.ready_info = message
                self._ready.set()
            elif "spawned" in message:
                with self._lock:
                    waiter = self._pending.pop(int(message["spawned"]), None)
                if waiter is not None:
                    waiter[1].update(message)
                    waiter[0].set()
            elif "exited" in message:
                self._deliver_exit(int(message["exited"]), int(message["returncode"]))
        self._server_gone()

    def _deliver_exit(self, pid: int, returncode: int) -> None:
        with self._lock:
            child = self._children.get(pid)
            if child is None:  # the exit overtook the spawn reply's registration
                self._early_exits[pid] = returncode
                return
        child._exited(returncode)
        for callback in list(self.on_exit):
            callback(child)

    def _server_gone(self) -> None:
        """The server exited: its children got SIGKILL (death signal); wait until each is really gone."""
        self._ready.set()
        with self._lock:
            self._closed = True
            pending = list(self._pending.values())
            self._pending.clear()
            children = [c for c in self._children.values() if c.returncode is None]
        for event, reply in pending:
            reply["error"] = "the fork server exited"
            event.set()
        for child in children:
            _wait_pid_gone(child.pid)
            self._deliver_exit(child.pid, -signal.SIGKILL)  # the real status died with the server

    # -- API ---------------------------------------------------------------------------------------
    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """The server's ready report (preload seconds, failures); ForkServerError if it cannot fork safely."""
        if not self._ready.wait(timeout):
            raise ForkServerError(f"the fork server was not ready after {timeout:g}s")
        info = self.ready_info
        if info is None:
            raise ForkServerError(f"the fork server exited before it was ready (status {self.process.poll()})")
        if info.get("grpc"):
            raise ForkServerError("grpc was imported while preloading (by the task module?): forking is unsafe")
        if int(info.get("os_threads", 1)) > 1:
            raise ForkServerError(f"{info['os_threads']} threads run in the fork server after preloading (started by "
                                  "the task module?): a fork copies only one, and the others' locks stay held")
        return info

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: str | None = None,
              timeout: float = 300.0) -> ForkedProcess:
        """Fork a child running `argv` (this interpreter: ``-m mod``, ``-c code`` or a script)."""
        if not lifeline.runnable(argv):
            raise ForkServerError(f"the fork server runs this interpreter's modules and scripts, not {argv[:2]}")
        self.wait_ready(timeout)
        with self._lock:
            if self._closed:
                raise ForkServerError("the fork server exited")
            self._next_id += 1
            request_id = self._next_id
            waiter: tuple[threading.Event, dict[str, Any]] = (threading.Event(), {})
            self._pending[request_id] = waiter
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._send({"op": "spawn", "id": request_id, "argv": list(argv), "env": dict(env), "cwd": cwd,
                    "log": str(log_path)})
        if not waiter[0].wait(timeout):
            raise ForkServerError(f"no answer from the fork server within {timeout:g}s")
        reply = waiter[1]
        if "pid" not in reply:
            raise ForkServerError(f"the fork server could not start {argv[1:]}: {reply.get('error', 'unknown error')}")
        child = ForkedProcess(int(reply["pid"]), argv)
        with self._lock:
            self._children[child.pid] = child
            early = self._early_exits.pop(child.pid, None)
        if early is not None:
            self._deliver_exit(child.pid, early)
        return child

    def close(self, timeout: float = 10.0) -> None:
        """Stop the server (it SIGKILLs any child left) and reap it."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=timeout)
        self._file.close()
        self._sock.close()

    def __enter__(self) -> "ForkServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _wait_pid_gone(pid: int, timeout: float = 30.0) -> None:
    """Block until `pid` has exited (a pidfd becomes readable; polling where pidfds do not exist)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)  # fallback poll, only on kernels without pidfd
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m garfield.launcher.forkserver",
                                     description="garfield's preloaded fork server (started by `garfield run`)")
    parser.add_argument("--fd", type=int, help="the socket to the launcher")
    parser.add_argument("--warm-all", action="store_true",
                        help="compile every aggregation rule's numba kernels into the on-disk cache, then exit")
    args = parser.parse_args(argv)
    if args.warm_all:
        from garfield.aggregators.catalog import RULES

        rules: list[tuple[str, dict[str, Any], int, int]] = []
        for name, rule in RULES.items():
            n, f = next(((n, f) for f in (1, 2) for n in range(3, 40) if rule.condition.holds(n, f)), (0, 0))
            if n:
                rules.append((name, {}, n, f))
        warmed = warm_rules(None, rules, dtypes=("float32", "float64"))
        print(f"compiled and cached: {', '.join(warmed)}")
        return 0
    if args.fd is None:
        parser.error("--fd is required")
    code = serve(args.fd)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter finalisation: tearing torch and numba down costs seconds, for nothing


if __name__ == "__main__":
    sys.exit(main())
