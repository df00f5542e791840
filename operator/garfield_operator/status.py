"""Status bookkeeping (pure): timestamps, conditions, per-role pod counts, the status patch.

Conditions follow the Kubernetes convention: one entry per type, `lastTransitionTime` changes
only when `status` flips, so `kubectl describe` shows when things happened, not when the operator
last looked.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from garfield.observability.status import summarize
from garfield.plan import Plan

from garfield_operator import constants as C
from garfield_operator.observe import PodView

Status = dict[str, Any]


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def get_condition(status: Status, ctype: str) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    for cond in conditions:
        if cond.get("type") == ctype:
            return cond
    return None


def is_true(status: Status, ctype: str) -> bool:
    cond = get_condition(status, ctype)
    return bool(cond and cond.get("status") == "True")


def set_condition(status: Status, ctype: str, value: bool, reason: str, message: str, now: dt.datetime) -> bool:
    """Set one condition in place; return True when its status flipped (or it is new)."""
    conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
    text = "True" if value else "False"
    for i, cond in enumerate(conditions):
        if cond.get("type") != ctype:
            continue
        flipped = cond.get("status") != text
        new = {"type": ctype, "status": text, "reason": reason, "message": message,
               "lastTransitionTime": rfc3339(now) if flipped else cond.get("lastTransitionTime", rfc3339(now))}
        if flipped:
            conditions.pop(i)
            conditions.append(new)  # newest transition last
        else:
            conditions[i] = new
        status["conditions"] = conditions
        return flipped
    conditions.append({"type": ctype, "status": text, "reason": reason, "message": message,
                       "lastTransitionTime": rfc3339(now)})
    status["conditions"] = conditions
    return True


def replica_statuses(plan: Plan, views: Iterable[PodView], previous: Status) -> dict[str, dict[str, int]]:
    """Counts per role; `failed` keeps failures of pods already deleted (it is cumulative)."""
    out: dict[str, dict[str, int]] = {}
    for replica in plan.replicas:
        out.setdefault(C.STATUS_KEY[replica.role], {"active": 0, "ready": 0, "succeeded": 0, "failed": 0})
    prev = previous.get("replicaStatuses") or {}
    for key in out:
        out[key]["failed"] = int((prev.get(key) or {}).get("failed", 0))
    names = {r.name for r in plan.replicas}
    for v in views:
        if v.name not in names or v.role not in C.STATUS_KEY:
            continue
        counts = out[C.STATUS_KEY[v.role]]
        if v.active:
            counts["active"] += 1
        if v.ready:
            counts["ready"] += 1
        if v.succeeded:
            counts["succeeded"] += 1
    return out


def patch_for(previous: Status, new: Status) -> Status | None:
    """The JSON merge patch turning `previous` into `new` (top-level keys), or None when equal."""
    patch: Status = {}
    for key in set(previous) | set(new):
        if previous.get(key) != new.get(key):
            patch[key] = new.get(key)
    return patch or None


# -- status.progress: from the correct primaries' /status replies or termination messages ------


def summarize_progress(replies: list[dict[str, Any]], now: dt.datetime) -> dict[str, Any] | None:
    """The median-step reply as status.progress fields (None when no reply is usable).

    The summary is garfield's own (`garfield.observability.status`, shared with `garfield run`'s bar):
    non-finite values are already dropped there, so none reaches the status as JSON NaN.
    """
    summary = summarize(replies)
    if summary is None:
        return None
    out: dict[str, Any] = {"step": summary.step}
    for key, value in (("loss", summary.loss), ("accuracy", summary.accuracy), ("stepsPerSecond", summary.steps_per_second)):
        if value is not None:
            out[key] = round(value, 6)
    if summary.rejected is not None:
        out["rejectedMessages"] = summary.rejected
    out["updateTime"] = rfc3339(now)
    return out


def same_progress(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Equal apart from updateTime (a status patch is only worth it when training moved)."""
    def strip(d: dict[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in (d or {}).items() if k not in ("updateTime", "totalSteps")}

    return strip(a) == strip(b)
