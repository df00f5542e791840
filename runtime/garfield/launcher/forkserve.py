"""The fork server process: preload, then fork one child per request and report each exit.

Started by :class:`garfield.launcher.forkserver.ForkServer` as ``python -m garfield.launcher.forkserver``
(whose `main` calls :func:`serve`); the child side (:func:`_child`) turns a fork into the replica.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from typing import Any, Callable, Mapping, Sequence

from garfield.launcher import lifeline
from garfield.launcher.forkpreload import preload
from garfield.launcher.forkwire import encode, split_lines

ENV_FORKED_AT = "GARFIELD_FORKED_AT"  # wall-clock time of the fork, for the node's start-up breakdown


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
            sock.sendall(encode(message))
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
        return split_lines(buffer)

    try:
        batch: list[dict[str, Any]] | None = []
        while batch is not None and not batch:
            batch = requests()  # blocking: the preload message comes first
        if batch is None:
            return 0
        info = preload(batch.pop(0))
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
