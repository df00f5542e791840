"""Process checks for tests that watch replicas die: race-free against the reaper."""

from __future__ import annotations

import psutil


def running(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) process. One lookup, not `pid_exists` then `Process`:
    a process reaped between those two calls made `Process(pid)` raise NoSuchProcess, and failed a
    test on a loaded machine exactly when the process had gone as it should."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
