"""edits: which changes to a running job's spec apply live, and which are rejected while it runs.

A job's pods are immutable and carry the plan they were created from (peer addresses, quorum
sizes, rules, the task): a pod recreated from an edited spec would join replicas that run the old
one, and a job whose replicas disagree on n, f or the rule is no longer the job the user asked for.
So while a job has pods, the operator keeps running it with the spec those pods started with
(`status.appliedSpec`) and applies only `runPolicy` from the edited spec: suspend, deadline,
backoff limit, restart, clean-up and TTL policies are the operator's own decisions and take effect
on the next pass. Every other change is rejected until the job is suspended (its pods are deleted,
and the resumed job starts from the spec as it is then) or the change is reverted, and the job
says so in a condition and an event instead of ignoring it silently.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

Spec = Mapping[str, Any]

# Top-level spec fields that a running job takes from its current spec.
LIVE_FIELDS: frozenset[str] = frozenset({"runPolicy"})

# At most this many changed fields are named in a condition's message (then "and N more").
NAMED_AT_MOST = 8


def _differences(before: Any, after: Any, path: str) -> list[str]:
    """The dotted paths at which `after` differs from `before` (a list is compared whole)."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            out += _differences(before.get(key), after.get(key), f"{path}.{key}")
        return out
    return [] if before == after else [path]


def rejected_changes(applied: Spec, current: Spec) -> list[str]:
    """The fields (as `spec.a.b`) changed from the applied spec that cannot apply to a running job."""
    return _differences({k: v for k, v in applied.items() if k not in LIVE_FIELDS},
                        {k: v for k, v in current.items() if k not in LIVE_FIELDS}, "spec")


def effective_spec(applied: Spec, current: Spec) -> dict[str, Any]:
    """What a running job runs with: its applied spec, with the live fields as they are now."""
    out = {k: copy.deepcopy(v) for k, v in applied.items() if k not in LIVE_FIELDS}
    out.update({k: copy.deepcopy(v) for k, v in current.items() if k in LIVE_FIELDS})
    return out


def describe(fields: list[str]) -> str:
    """A condition message naming the rejected fields and what the user can do about them."""
    named = ", ".join(fields[:NAMED_AT_MOST]) + (f" and {len(fields) - NAMED_AT_MOST} more"
                                                  if len(fields) > NAMED_AT_MOST else "")
    return (f"{named} changed while the job runs and not applied: its pods keep the spec they started with. "
            f"Revert the change, or suspend and resume the job (runPolicy.suspend) to restart it with the new spec. "
            f"Applied live: {', '.join(sorted(LIVE_FIELDS))}")
