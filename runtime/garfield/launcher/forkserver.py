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

Protocol: JSON lines on a socketpair. Launcher -> server: ``{"op": "preload", ...}`` once, then
``{"op": "spawn", "id", "argv", "env", "cwd", "log"}``; closing the socket stops the server (which
SIGKILLs whatever children are left). Server -> launcher: ``{"ready", ...}``, ``{"spawned": id,
"pid"}`` (or ``"error"``), ``{"exited": pid, "returncode"}``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from garfield.launcher import lifeline

ENV_FORK_SERVER = "GARFIELD_FORK_SERVER"  # "0" disables the fork server (fresh processes per replica)
ENV_FORKED_AT = "GARFIELD_FORKED_AT"  # wall-clock time of the fork, for the node's start-up breakdown

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


# ============================================================== launcher side


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
        data = (json.dumps(message) + "\n").encode()
        with self._send_lock:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise ForkServerError(f"the fork server is gone: {exc}") from None

    def _read_loop(self) -> None:
        for line in self._file:
            try:
                message = json.loads(line)
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


# ============================================================== server side


def warm_rules(spec: Mapping[str, Any] | None, names: Sequence[tuple[str, dict[str, Any], int, int]] = (),
               dtypes: Sequence[str] = ("float32",)) -> list[str]:
    """Run each aggregation rule the job uses (or `names`: rule, params, n, f) once on small inputs
    of each dtype: loads (or compiles and caches) the numba kernels behind them. Returns the rules warmed."""
    import torch

    from garfield.aggregators import aggregate

    rules = list(names)
    if spec is not None:
        for role in ("servers", "workers"):
            section = spec.get(role) or {}
            gar = section.get("gar") or {}
            replicas, f = int(section.get("replicas", 0) or 0), int(section.get("byzantine", 0) or 0)
            if gar.get("name") and replicas:
                rules.append((gar["name"], dict(gar.get("params") or {}), max(1, replicas - f), f))
    warmed = []
    generator = torch.Generator().manual_seed(0)
    for name, params, n, f in rules:
        if n < 2:
            continue
        for dtype in dtypes:
            aggregate(name, torch.randn(n, 256, generator=generator, dtype=getattr(torch, dtype)), f, **params)
        warmed.append(name)
    return warmed


def warm_task(spec: Mapping[str, Any]) -> str:
    """Build the job's task once and take one training step, one update and one evaluation with it
    on the CPU: the task's module, its data (cached in memory) and the lazily imported parts of
    torch (the optimizer pulls in torch._dynamo: seconds) are then shared by every fork. Never
    touches CUDA: a CUDA context does not survive a fork."""
    from garfield.adapters.pytorch import TorchAdapter
    from garfield.spec.model import from_dict
    from garfield.task import load_task

    task_spec = spec.get("task") or {}
    entrypoint = str(task_spec.get("entrypoint", ""))
    if not entrypoint:
        return ""
    job = from_dict(dict(spec))
    adapter = TorchAdapter(load_task(entrypoint, task_spec.get("args") or {}), job, "worker", 0, device="cpu")
    gradient, _ = adapter.compute_gradient()
    adapter.apply_gradient(adapter.momentum(None, gradient, 0.9))
    adapter.from_numpy(adapter.to_numpy(adapter.get_params()))
    adapter.evaluate(max_batches=1)
    return entrypoint


def _preload(message: Mapping[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    failed: dict[str, str] = {}
    cpu: dict[str, float] = {}  # CPU seconds per preloaded module / warm-up step: the breakdown to optimise
    threads = int(message.get("threads") or 1)

    def timed(name: str, step: Callable[[], Any]) -> Any:
        before = time.process_time()
        try:
            return step()
        except Exception as exc:  # the child does it again and reports the error in its own log
            failed[name] = f"{type(exc).__name__}: {exc}"
            return None
        finally:
            if (spent := time.process_time() - before) >= 0.01:
                cpu[name] = round(spent, 3)

    for name in message.get("modules") or ():
        timed(name, lambda: importlib.import_module(name))  # noqa: B023 - called at once
        if name == "torch" and "torch" in sys.modules:
            # one thread here, whatever a child wants: no OpenMP pool may exist at fork time
            sys.modules["torch"].set_num_threads(1)
    imported = time.monotonic()
    spec = message.get("spec")
    warmed: list[str] = []
    if spec:
        timed("warm: task (model, data, one step, optimizer, evaluation)", lambda: warm_task(spec))
        warmed = timed("warm: aggregation rules", lambda: warm_rules(spec)) or []
    done = time.monotonic()
    for name, error in failed.items():
        print(f"forkserver: preloading {name} failed: {error}", file=sys.stderr, flush=True)
    return {"ready": True, "pid": os.getpid(), "grpc": any(m == "grpc" or m.startswith("grpc.") for m in sys.modules),
            "threads": threading.active_count(), "os_threads": _os_threads(), "import_seconds": round(imported - started, 3),
            "warm_seconds": round(done - imported, 3), "cpu_seconds": round(time.process_time(), 3), "cpu_breakdown": cpu,
            "rules": warmed, "failed": failed, "child_threads": threads}


def _os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter would exit with for this SystemExit."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _child(request: Mapping[str, Any], server_pid: int, cleanup: Callable[[], None]) -> None:
    """In the forked child: become the replica described by `request`, run it, exit. Never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        lifeline.set_death_signal(signal.SIGKILL)
        if os.getppid() != server_pid:  # the server died before the signal was armed
            os._exit(lifeline.ORPHANED_EXIT)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        cleanup()  # the server's socket and wake-up pipe are not the replica's
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        if request.get("cwd"):
            os.chdir(request["cwd"])
        env = dict(request.get("env") or {})
        argv = list(request["argv"])
        role, index = env.get("GARFIELD_ROLE"), env.get("GARFIELD_INDEX")
        lifeline.set_name(f"{role}-{index}" if role and index else _short_name(argv[1:]))
        env[lifeline.ENV_PARENT_PID] = str(server_pid)
        env[ENV_FORKED_AT] = repr(time.time())
        os.environ.clear()
        os.environ.update(env)
        torch = sys.modules.get("torch")
        if torch is not None and env.get("OMP_NUM_THREADS", "").isdigit():
            torch.set_num_threads(max(1, int(env["OMP_NUM_THREADS"])))  # torch read the server's at import
        try:
            lifeline.run_target(argv[1:])
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except KeyboardInterrupt:
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 1
    except BaseException:
        try:
            traceback.print_exc()
        finally:
            os._exit(1)
    lifeline.exit_now(code)


def _short_name(target: Sequence[str]) -> str:
    """What `ps -o comm` shows for a fork that is no replica: the module, the script, or "python -c"."""
    if target[:1] == ["-m"] and len(target) > 1:
        return target[1]
    if target[:1] == ["-c"]:
        return "python -c"
    return os.path.basename(target[0]) if target else "python"


def _returncode(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def serve(fd: int) -> int:
    """The server's loop: preload, then fork on request and report exits until the launcher hangs up."""
    lifeline.arm()
    server_pid = os.getpid()
    sock = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    buffer = bytearray()

    def send(message: dict[str, Any]) -> None:
        try:
            sock.sendall((json.dumps(message) + "\n").encode())
        except OSError:
            pass

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            note({"exited": pid, "returncode": _returncode(status)})

    def note(message: dict[str, Any]) -> None:
        """Send to the launcher, and keep a timestamped line in the server's log (for diagnostics)."""
        send(message)
        print(json.dumps({"ts": round(time.time(), 3), **message}), file=sys.stderr, flush=True)

    def cleanup_in_child() -> None:
        sock.close()
        os.close(wake_r)
        os.close(wake_w)

    def requests() -> list[dict[str, Any]] | None:
        """The complete lines received so far; None once the launcher hung up."""
        try:
            chunk = sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return []
        if not chunk:
            return None
        buffer.extend(chunk)
        lines = []
        while (end := buffer.find(b"\n")) >= 0:
            lines.append(json.loads(bytes(buffer[:end])))
            del buffer[:end + 1]
        return lines

    try:
        batch: list[dict[str, Any]] | None = []
        while batch is not None and not batch:
            batch = requests()  # blocking: the preload message comes first
        if batch is None:
            return 0
        info = _preload(batch.pop(0))
        print(json.dumps({"ts": round(time.time(), 3), "msg": "ready", **info}), file=sys.stderr, flush=True)
        send(info)
        sock.setblocking(False)
        while True:
            for request in batch:
                if request.get("op") != "spawn":
                    continue
                try:
                    pid = os.fork()
                except OSError as exc:
                    send({"spawned": request["id"], "error": f"fork failed: {exc}"})
                    continue
                if pid == 0:
                    _child(request, server_pid, cleanup_in_child)
                try:
                    os.setpgid(pid, pid)  # the child does it too: whichever runs first, the group exists
                except OSError:
                    pass  # the child already did, or already exited
                children.add(pid)
                note({"spawned": request["id"], "pid": pid})
            reap()  # a child may have exited before it was counted
            watched: list[socket.socket | int] = [sock, wake_r]
            ready, _, _ = select.select(watched, [], [])
            if wake_r in ready:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            batch = requests() if sock in ready else []
            if batch is None:
                return 0
    finally:
        for pid in list(children):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for pid in list(children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


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
