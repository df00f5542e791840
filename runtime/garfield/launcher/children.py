"""Child processes that cannot outlive the launcher.

Each replica runs in its own process group (so a terminal's Ctrl-C reaches only the launcher, which
then stops everyone in order, and a stop signal reaches anything a node itself starts). On Linux
each child is also SIGKILLed by the kernel when the launcher dies (``PR_SET_PDEATHSIG``), which
covers the one case no handler can: the launcher being SIGKILLed or crashing. Stopping is
SIGTERM to every group at once, a grace period, then SIGKILL to what is left.

No Python runs between fork and exec: children are started with no ``preexec_fn`` (the group is
made by ``process_group=0``, which lets CPython take its vfork path), because a pre-exec hook is
Python code in a copy of a process whose other threads (gRPC's, in pytest, a notebook or the
launcher) may have held locks when it forked, and such children crashed. The child arms its death
signal itself (:mod:`garfield.launcher.lifeline`): a garfield node does it first thing, other
Python commands are started through ``python -m garfield.launcher.lifeline``. Replicas forked by a
fork server (:mod:`garfield.launcher.forkserver`) are supervised exactly the same way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Mapping, Protocol, Sequence

from garfield.launcher import lifeline

if TYPE_CHECKING:
    from garfield.launcher.forkserver import ForkServer


class Process(Protocol):
    """What supervision needs of a child: `subprocess.Popen`, or a fork server's `ForkedProcess`."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def arms_itself(command: Sequence[str]) -> bool:
    """Whether `command` is a garfield node, which arms its own death signal (garfield.node.main):
    ``python -m garfield node``, ``python -m garfield.node`` or the ``garfield node`` script."""
    args = list(command)
    if len(args) >= 3 and args[1] == "-m":
        return args[2] == "garfield.node" or (args[2] in ("garfield", "garfield.cli") and args[3:4] == ["node"])
    return len(args) >= 2 and os.path.basename(args[0]) == "garfield" and args[1] == "node"


def with_lifeline(command: Sequence[str]) -> list[str]:
    """`command`, started through the lifeline runner when it is a Python command that would not
    arm the death signal itself; other commands unchanged (they get no death signal)."""
    args = list(command)
    if arms_itself(args) or not lifeline.runnable(args):
        return args
    return [args[0], "-m", "garfield.launcher.lifeline", *args[1:]]


@dataclass
class Child:
    """One supervised replica process and its log file."""

    name: str
    role: str
    index: int
    byzantine: bool
    log_path: Path
    popen: Process  # named for subprocess.Popen; a ForkedProcess for replicas from the fork server
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    stopped_by_launcher: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def reap(self) -> int | None:
        """Collect the exit status if the process ended; remember when."""
        code = self.popen.poll()
        if code is not None and self.ended is None:
            self.ended = time.monotonic()
        return code

    def describe_exit(self) -> str:
        code = self.popen.returncode
        if code is None:
            return "running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit {code}"

    def failure_reason(self) -> str | None:
        """The node's own last structured error ("msg" plus the exception's final line), if it logged one.

        A failing node's log ends with teardown noise (cancelled RPCs); its JSON error line says why.
        """
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        for line in reversed(text.splitlines()):
            if not line.startswith("{") or '"level"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
                exception = str(entry.get("exception") or "").strip().splitlines()
                return f"{entry.get('msg', 'error')}: {exception[-1]}" if exception else str(entry.get("msg", "error"))
        return None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def spawn(name: str, role: str, index: int, byzantine: bool, command: Sequence[str], env: Mapping[str, str],
          log_path: Path, cwd: str | None = None, forkserver: "ForkServer | None" = None,
          startup_seconds: float = 300.0) -> Child:
    """Start `command` in a new process group, stdout+stderr to `log_path`, dying with the launcher.

    With `forkserver`, the replica is forked from that preloaded server (when `command` is this
    interpreter running a module or script; waiting up to `startup_seconds` for the server to be
    ready); otherwise it is a fresh process.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if forkserver is not None and lifeline.runnable(command):
        process: Process = forkserver.spawn(command, env, log_path, cwd=cwd or os.getcwd(),  # cwd: as Popen's
                                            timeout=startup_seconds)
        return Child(name=name, role=role, index=index, byzantine=byzantine, log_path=log_path, popen=process)
    child_env = dict(env)
    child_env[lifeline.ENV_PARENT_PID] = str(os.getpid())
    log: IO[bytes] = open(log_path, "wb", buffering=0)  # a reused folder starts fresh logs
    try:
        popen = subprocess.Popen(
            with_lifeline(command),
            env=child_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
            close_fds=True,
        )
    finally:
        log.close()  # the child holds its own descriptor
    return Child(name=name, role=role, index=index, byzantine=byzantine, log_path=log_path, popen=popen)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    try:
        os.killpg(child.pid, sig)  # the child leads its own group: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


def stop(children: Sequence[Child], grace: float = 5.0) -> None:
    """SIGTERM every live child's group, wait up to `grace` seconds, then SIGKILL the rest.

    Groups of children that already exited are signalled too: a node's own subprocesses must not
    survive it. Returns once every child has been reaped.
    """
    for child in children:
        if child.reap() is None:
            child.stopped_by_launcher = True
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        remaining = deadline - time.monotonic()
        try:
            child.popen.wait(timeout=max(0.0, remaining))
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        _signal_group(child, signal.SIGKILL)
    for child in children:
        child.popen.wait()
        child.reap()
