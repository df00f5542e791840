"""A child's own tie to its launcher: the kernel SIGKILLs it when the launcher dies.

Why the child arms this itself: the launcher used to arm ``PR_SET_PDEATHSIG`` from a
``preexec_fn``, i.e. Python code running between ``fork`` and ``exec`` in a copy of a process whose
other threads (gRPC's, in pytest, a notebook or the launcher) may have held locks at the moment of
the fork. That crashed children (SIGSEGV/SIGABRT). Now the launcher starts children with no
pre-exec hook at all and passes its pid in ``GARFIELD_PARENT_PID``; the child, once it runs its own
fresh interpreter, arms the death signal and exits at once if its parent is already someone else
(the launcher died before the signal was armed, so it would never fire).

This module imports nothing beyond the standard library so that it costs milliseconds to arm.
``python -m garfield.launcher.lifeline TARGET...`` arms the signal and then runs TARGET as the
interpreter would (``-m module``, ``-c code`` or ``script``): the launcher wraps Python children
that are not garfield nodes (stand-ins, tools) with it, so they die with the launcher too.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import runpy
import signal
import sys
import threading
from typing import Callable, Mapping, NoReturn, Sequence

ENV_PARENT_PID = "GARFIELD_PARENT_PID"
PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_SET_NAME = 15
ORPHANED_EXIT = 1  # exit status of a child whose launcher was already gone when it started

Prctl = Callable[..., int]  # int prctl(int option, unsigned long arg2, ..., arg5)
_prctl: Prctl | bool | None = None  # None: not looked up yet; False: looked up, none found


def _libc_prctl() -> Prctl | None:
    """libc's prctl, or None where it does not exist (not Linux, no libc found)."""
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        _prctl = False
        # the interpreter's own symbols first: ctypes.util.find_library would run ldconfig in a subprocess
        finders: tuple[Callable[[], str | None], ...] = (
            lambda: None, lambda: "libc.so.6", lambda: ctypes.util.find_library("c"))
        for find in finders:
            try:
                _prctl = ctypes.CDLL(find(), use_errno=True).prctl
                break
            except (OSError, AttributeError, TypeError):
                continue
    return _prctl if callable(_prctl) else None


def set_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send `sig` to this process when its parent (thread) exits; False if unsupported."""
    prctl = _libc_prctl()
    if prctl is None:
        return False
    return prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def set_name(name: str) -> None:
    """This process's short name (``top``, ``ps -o comm``; 15 bytes): forks all share the server's command line."""
    prctl = _libc_prctl()
    if prctl is not None:
        prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def death_signal() -> int:
    """The armed parent-death signal (0: none); tests and diagnostics read it back."""
    prctl = _libc_prctl()
    if prctl is None:
        return 0
    value = ctypes.c_int(0)
    if prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0) != 0:
        return 0
    return value.value


def arm(env: Mapping[str, str] | None = None) -> bool:
    """Arm SIGKILL-on-parent-death when a launcher named itself in GARFIELD_PARENT_PID.

    Exits the process (status ORPHANED_EXIT) when the parent already changed: the launcher died
    between starting this process and now, and nobody would ever stop it. Returns whether the
    signal is armed; a process started by anything else (operator pod, a shell) is left alone.
    """
    env = os.environ if env is None else env
    expected = env.get(ENV_PARENT_PID, "")
    if not expected.isdigit():
        return False
    armed = set_death_signal(signal.SIGKILL)
    if os.getppid() != int(expected):
        os._exit(ORPHANED_EXIT)
    return armed


def exit_now(code: int) -> NoReturn:
    """Exit with `code` after what a script may rely on at exit (non-daemon threads joined, atexit
    handlers run, stdio flushed), skipping the rest of interpreter finalisation: with torch, numba
    and gRPC loaded that teardown costs a second of CPU per process, for nothing, when 11 replicas
    leave together on 2 cores."""
    try:
        main = threading.main_thread()
        for thread in threading.enumerate():
            if thread is not main and thread is not threading.current_thread() and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed or broken stream must not keep the process alive
                pass
        os._exit(code)


def run_target(argv: Sequence[str]) -> None:
    """Run `argv` (what follows the interpreter on a command line) in this process as `python` would."""
    args = list(argv)
    if not args:
        raise SystemExit("lifeline: nothing to run")
    if args[0] == "-m" and len(args) >= 2:
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    elif args[0] == "-c" and len(args) >= 2:
        sys.argv = ["-c", *args[2:]]
        code = compile(args[1], "<string>", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})  # noqa: S102 - the caller's own code
    else:
        sys.argv = list(args)
        sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
        runpy.run_path(args[0], run_name="__main__")


def runnable(argv: Sequence[str]) -> bool:
    """Whether `argv` is this interpreter running a module, code or a script (what run_target handles)."""
    if len(argv) < 2 or os.path.abspath(argv[0]) != os.path.abspath(sys.executable):
        return False  # not realpath: a virtualenv's python is a symlink to a base interpreter
    return argv[1] in ("-m", "-c") and len(argv) >= 3 or not argv[1].startswith("-")


if __name__ == "__main__":
    arm()
    run_target(sys.argv[1:])
