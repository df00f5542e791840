"""Driving `garfield_operator.reconcile.decide` without a cluster: a stored job, its pods, a fixed clock.

Shared by tests/operator/test_reconcile.py and the per-policy tests (tests/operator/policies/).
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from garfield_operator import constants as C
from garfield_operator.reconcile import Decision, Observed, decide

from support import manifests

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
IMAGE = "registry.test/garfield:1"


def job(workers: int = 5, worker_f: int = 1, servers: int | None = 1, server_f: int = 0, gar: str = "median",
        run_policy: dict[str, Any] | None = None, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """Job "j" as the apiserver stores it (namespace ns, uid, generation): manifests.job's defaults."""
    body = manifests.job("j", workers=workers, worker_f=worker_f, gar=gar, servers=servers, server_f=server_f,
                         run_policy=run_policy or {}, metadata={"namespace": "ns", "uid": "uid-1", "generation": 1},
                         **spec)
    if status is not None:
        body["status"] = status
    return body


def apply(body: dict[str, Any], d: Decision) -> dict[str, Any]:
    """The job as stored after the decision's status patch (JSON merge patch of status keys)."""
    out = copy.deepcopy(body)
    st = out.setdefault("status", {})
    for k, v in (d.status_patch or {}).items():
        if v is None:
            st.pop(k, None)
        else:
            st[k] = v
    return out


def pod(manifest: dict[str, Any], phase: str = "Pending", ready: bool = False, ip: str = "",
        terminated: dict[str, Any] | None = None, deleting: bool = False, uid: str = "") -> dict[str, Any]:
    p = copy.deepcopy(manifest)
    p["metadata"]["uid"] = uid or f"uid-{p['metadata']['name']}"
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    if terminated:
        status["containerStatuses"] = [{"name": "garfield", "state": {"terminated": terminated}}]
    p["status"] = status
    return p


def first_pass(body: dict[str, Any]) -> tuple[dict[str, Any], Decision]:
    d = decide(Observed(body, [], False, T0), IMAGE)
    return apply(body, d), d


def running(body: dict[str, Any], created: list[dict[str, Any]], **overrides: str) -> list[dict[str, Any]]:
    """Every created pod Running and Ready, except those named in overrides (name -> phase)."""
    out = []
    for m in created:
        name = m["metadata"]["name"]
        phase = overrides.get(name, "Running")
        term = {"exitCode": 0 if phase == "Succeeded" else 1, "reason": "Completed" if phase == "Succeeded" else "Error"}
        out.append(pod(m, phase, ready=phase == "Running", ip="10.0.0.1",
                       terminated=term if phase in ("Succeeded", "Failed") else None))
    return out


def running_job(**kw: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """job(**kw) after its first two passes: pods created, all Running, phase Running."""
    body = job(**kw)
    stored, d = first_pass(body)
    pods = running(stored, d.create_pods)
    d2 = decide(Observed(stored, pods, True, T0), IMAGE)
    stored = apply(stored, d2)
    assert stored["status"]["phase"] == C.RUNNING
    return stored, d.create_pods
