"""cleanPodPolicy: which pods a finished job deletes (All, Running = the unfinished ones, None)."""

from __future__ import annotations

from collections.abc import Iterable

from garfield_operator.observe import PodView


def pods_to_delete(policy: str, views: Iterable[PodView]) -> list[PodView]:
    if policy == "None":
        return []
    alive = [v for v in views if not v.terminating]
    if policy == "All":
        return alive
    return [v for v in alive if v.phase in ("Pending", "Running", "Unknown")]
