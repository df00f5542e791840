"""How many CPUs one replica process may really use.

Both frameworks size their thread pools from it: in a pod with a CPU limit, os.cpu_count() and the
frameworks' defaults see the node's cores, and oversubscribed threads slow every step.
"""

from __future__ import annotations

import math
import os


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a pod's CPU
    limit, which neither os.cpu_count nor torch's default thread count sees)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)
