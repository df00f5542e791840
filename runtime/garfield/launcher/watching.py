"""Watching a local run: the correct servers' `/status` and every replica's process, as lifecycle states.

Watching decides nothing: it records what the replicas say and how their processes ended, in the
terms of `garfield.lifecycle` (shared with the operator), for the supervisor to decide with.
"""

from __future__ import annotations

from typing import Any, Callable

from garfield.launcher import children as proc
from garfield.launcher.status import fetch_status, final_from_log
from garfield.lifecycle import Health, ReplicaState
from garfield.observability.status import parse_status
from garfield.plan import Plan
from garfield.spec.kinds import Role

STATUS_INTERVAL = 1.0  # seconds between /status reads (the display's refresh, not a synchronisation)
FINISH_INTERVAL = 0.1  # the same once a correct server reached the last step: "done" is seen at once


def replica_state(child: proc.Child, reported_done: bool) -> ReplicaState:
    """A child process in the lifecycle's terms (garfield.lifecycle, shared with the operator).

    A crash is a non-zero exit the launcher did not cause; exit 0 or a "done" status is finished.
    """
    code = child.reap()
    if code is None or child.stopped_by_launcher:
        health = Health.FINISHED if reported_done else Health.RUNNING
    else:
        health = Health.FINISHED if code == 0 else Health.LOST
    return ReplicaState(child.name, Role(child.role), child.byzantine, health,
                        child.describe_exit() if health is Health.LOST else "")


def crashed(child: proc.Child) -> bool:
    """A non-zero exit the launcher did not cause."""
    code = child.reap()
    return code is not None and code != 0 and not child.stopped_by_launcher


class Watcher:
    """The latest `/status` of each correct primary (server, or peer) and who reported "done".

    `children` is the supervisor's own list (it grows as replicas start), not a copy.
    """

    def __init__(self, plan: Plan, children: list[proc.Child],
                 on_status: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.primary = plan.primary_role
        self.replicas = {r.name: r for r in plan.replicas}
        self.children = children
        self.on_status = on_status
        self.last_status: dict[str, dict[str, Any]] = {}
        self.finished: set[str] = set()

    def correct_primaries(self) -> list[proc.Child]:
        return [c for c in self.children if c.role == self.primary and not c.byzantine]

    def poll_statuses(self) -> list[dict[str, Any]]:
        """Read every live correct primary's `/status` once; the fresh replies."""
        fresh = []
        for child in self.correct_primaries():
            if child.reap() is not None:
                continue
            status = fetch_status(self.replicas[child.name].ports["metrics"])
            if status is None:
                continue
            self.last_status[child.name] = status
            fresh.append(status)
            if self.on_status is not None:
                self.on_status(child.name, status)
            if status.get("phase") == "done":
                self.finished.add(child.name)
        return fresh

    def states(self) -> list[ReplicaState]:
        return [replica_state(c, c.name in self.finished) for c in self.children]

    def still_training(self) -> list[proc.Child]:
        """Correct primaries alive that have not reported "done"."""
        return [c for c in self.correct_primaries() if c.reap() is None and c.name not in self.finished]

    def status_interval(self, total_steps: int) -> float:
        """The refresh tick, shorter at the end so that the last "done" is not seen up to a tick late."""
        last = max((parse_status(s).step or 0 for s in self.last_status.values()), default=0)
        return FINISH_INTERVAL if last >= total_steps - 1 else STATUS_INTERVAL

    def merge_final_logs(self) -> None:
        """Complete each correct server's last status with the "done" line of its log (see final_from_log)."""
        for child in self.correct_primaries():
            final = final_from_log(child.log_path)
            if final is not None:
                merged = {**self.last_status.get(child.name, {}), **final, "phase": "done"}
                self.last_status[child.name] = merged
