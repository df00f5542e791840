"""Child processes that cannot outlive the launcher.

Each replica runs in its own process group (so a terminal's Ctrl-C reaches only the launcher, which
then stops everyone in order, and a stop signal reaches anything a node itself starts). On Linux
each child also asks the kernel to SIGKILL it when the launcher dies (``PR_SET_PDEATHSIG``), which
covers the one case no handler can: the launcher being SIGKILLed or crashing. Stopping is
SIGTERM to every group at once, a grace period, then SIGKILL to what is left.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

_PR_SET_PDEATHSIG = 1


def _death_signal_hook() -> Callable[[], None] | None:
    """A pre-exec hook arming PR_SET_PDEATHSIG, or None where prctl does not exist.

    libc and the parent's pid are resolved *before* fork, so the hook itself only makes two system
    calls (fork-safe even with threads in the parent). If the launcher already died between fork and
    prctl, the child is re-parented and exits at once instead of becoming an orphan.
    """
    if not sys.platform.startswith("linux"):
        return None
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        prctl = ctypes.CDLL(path, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return hook


@dataclass
class Child:
    """One supervised replica process and its log file."""

    name: str
    role: str
    index: int
    byzantine: bool
    log_path: Path
    popen: subprocess.Popen[bytes]
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
          log_path: Path, cwd: str | None = None) -> Child:
    """Start `command` in a new process group, stdout+stderr to `log_path`, dying with the launcher."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log: IO[bytes] = open(log_path, "wb", buffering=0)  # a reused folder starts fresh logs
    try:
        popen = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=_death_signal_hook(),
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
