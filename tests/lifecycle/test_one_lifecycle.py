"""One lifecycle, two launchers: the same faults end a job the same way locally and on a cluster.

Each scenario is a job (one of the shipped examples, or a variant without attackers) and a state
per replica (running, finished, lost). It is played through both launchers' own observation code:
`garfield run`'s supervisor over real child processes (a finished replica exits 0, a lost one exits
3, a running one sleeps) and the operator's reconcile pass over pods in the matching phases
(Running, Succeeded, Failed). Both must reach the same verdict, with the same message from
`garfield.lifecycle`, which is where the rule lives (tests/lifecycle/test_fate.py pins it alone).
"""

from __future__ import annotations

import copy
import datetime as dt
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from garfield.launcher import children as proc
from garfield.launcher.display import Display
from garfield.launcher.local import loopback_for
from garfield.launcher.summary import FAILED, SUCCEEDED
from garfield.launcher.supervision import Supervisor
from garfield.plan import make_plan
from garfield.spec.validation import validate_manifest

from garfield_operator import constants as C
from garfield_operator.reconcile import Observed, decide

REPO = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
IMAGE = "registry.test/garfield:1"

RUNNING, FINISHED, LOST = "running", "finished", "lost"


def example(name: str, attacks: bool = True) -> dict[str, Any]:
    manifest = yaml.safe_load((REPO / "examples" / f"{name}.yaml").read_text())
    manifest["metadata"]["namespace"] = "ns"
    if not attacks:
        manifest["spec"].pop("attack", None)
    return manifest


@dataclass(frozen=True)
class Scenario:
    id: str
    manifest: dict[str, Any]
    states: dict[str, str]  # replica name -> state; every other replica is running
    expected: str | None  # "Succeeded", "Failed", or None (the job goes on)
    default: str = RUNNING
    notes: str = field(default="", compare=False)


MSMW = example("mnist-msmw")  # servers 4 (f=1, server-3 attacks), workers 7 (f=2, workers 5-6 attack)
MSMW_CLEAN = example("mnist-msmw", attacks=False)
SSMW = example("mnist-ssmw")
PEERS = example("mnist-decentralized")
PEERS_CLEAN = example("mnist-decentralized", attacks=False)


def servers(job: str, states: str, *indices: int) -> dict[str, str]:
    return {f"{job}-server-{i}": states for i in indices}


def workers(job: str, states: str, *indices: int) -> dict[str, str]:
    return {f"{job}-worker-{i}": states for i in indices}


def peers(job: str, states: str, *indices: int) -> dict[str, str]:
    return {f"{job}-peer-{i}": states for i in indices}


SCENARIOS = [
    Scenario("all-running", MSMW, {}, None),
    Scenario("correct-servers-finished", MSMW, servers("mnist-msmw", FINISHED, 0, 1, 2), "Succeeded"),
    Scenario("two-of-three-correct-servers-finished", MSMW, servers("mnist-msmw", FINISHED, 0, 1), None),
    # f=2 workers, two attack: one crash more is three faulty (the case the two launchers once
    # disagreed on: the operator counted only the lost pod).
    Scenario("attackers-plus-one-crash", MSMW, workers("mnist-msmw", LOST, 0), "Failed"),
    Scenario("attacker-lost-is-no-fault", MSMW, workers("mnist-msmw", LOST, 6), None),
    Scenario("server-crash-beside-server-attacker", MSMW, servers("mnist-msmw", LOST, 1), "Failed"),
    Scenario("crashes-within-f", MSMW_CLEAN, {**workers("mnist-msmw", LOST, 0, 4), **servers("mnist-msmw", LOST, 2)}, None),
    Scenario("crashes-beyond-f", MSMW_CLEAN, workers("mnist-msmw", LOST, 0, 1, 2), "Failed"),
    Scenario("quorum-of-servers-finished", MSMW_CLEAN, servers("mnist-msmw", FINISHED, 0, 1, 2), "Succeeded"),
    Scenario("quorum-finished-one-crashed", MSMW_CLEAN,
             {**servers("mnist-msmw", FINISHED, 0, 1, 2), **servers("mnist-msmw", LOST, 3)}, "Succeeded"),
    Scenario("ssmw-everything-finished", SSMW, {}, "Succeeded", default=FINISHED),
    Scenario("ssmw-server-crash", SSMW, servers("mnist-ssmw", LOST, 0), "Failed"),
    Scenario("peers-crash-beside-attacker", PEERS, peers("mnist-p2p", LOST, 0), "Failed"),
    Scenario("peers-crash-within-f", PEERS_CLEAN, peers("mnist-p2p", LOST, 0), None),
    Scenario("peers-quorum-finished", PEERS_CLEAN, peers("mnist-p2p", FINISHED, 0, 1, 2, 3), "Succeeded"),
]


# -- garfield run: the supervisor over real processes --------------------------------------------------
EXIT = {FINISHED: "exit 0", LOST: "echo simulated crash; exit 3", RUNNING: "exec sleep 600"}


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


def local_verdict(s: Scenario, tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> tuple[str | None, str]:
    job = validate_manifest(copy.deepcopy(s.manifest))
    plan = make_plan(job, loopback_for(job))
    supervisor = Supervisor(job, plan, tmp_path, None, 1.0, Display(None, False), lambda r: [])
    for replica in plan.replicas:
        state = s.states.get(replica.name, s.default)
        log = tmp_path / f"{replica.name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(["/bin/sh", "-c", EXIT[state]], stdout=out, stderr=subprocess.STDOUT)
        started.append(popen)
        if state != RUNNING:
            popen.wait()
        supervisor.children.append(proc.Child(name=replica.name, role=replica.role, index=replica.index,
                                              byzantine=replica.byzantine, log_path=log, popen=popen))
    decided = supervisor.verdict()
    if decided is None:
        return None, ""
    outcome, message = decided
    return {SUCCEEDED: "Succeeded", FAILED: "Failed"}[outcome], message


# -- the operator: a reconcile pass over pods ----------------------------------------------------------
POD_PHASE = {RUNNING: "Running", FINISHED: "Succeeded", LOST: "Failed"}


def operator_verdict(s: Scenario) -> tuple[str | None, str]:
    body = copy.deepcopy(s.manifest)
    body["metadata"].update(uid="uid-1", generation=1)
    first = decide(Observed(body, [], False, T0), IMAGE)
    body["status"] = {k: v for k, v in (first.status_patch or {}).items() if v is not None}
    pods = []
    for manifest in first.create_pods:
        p = copy.deepcopy(manifest)
        name = p["metadata"]["name"]
        phase = POD_PHASE[s.states.get(name, s.default)]
        p["metadata"]["uid"] = f"uid-{name}"
        status: dict[str, Any] = {"phase": phase, "podIP": "198.18.0.9",
                                  "conditions": [{"type": "Ready", "status": "True" if phase == "Running" else "False"}]}
        if phase != "Running":
            code = 0 if phase == "Succeeded" else 3
            status["containerStatuses"] = [{"name": C.CONTAINER_NAME, "state": {"terminated": {
                "exitCode": code, "reason": "Completed" if code == 0 else "Error"}}}]
        p["status"] = status
        pods.append(p)
    d = decide(Observed(body, pods, True, T0 + dt.timedelta(seconds=5)), IMAGE)
    patch = d.status_patch or {}
    phase = patch.get("phase", body["status"].get("phase"))
    if phase not in C.TERMINAL_PHASES:
        return None, ""
    ctype = C.COND_SUCCEEDED if phase == C.SUCCEEDED else C.COND_FAILED
    cond = next(c for c in patch["conditions"] if c["type"] == ctype)
    return str(phase), cond["message"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_both_launchers_reach_the_same_verdict(scenario: Scenario, tmp_path: Path,
                                               processes: list[subprocess.Popen[bytes]]) -> None:
    local, local_message = local_verdict(scenario, tmp_path, processes)
    cluster, cluster_message = operator_verdict(scenario)
    assert local == cluster == scenario.expected, (local_message, cluster_message)
    if scenario.expected == "Succeeded":
        assert cluster_message and cluster_message == local_message
    if scenario.expected == "Failed":
        # The lifecycle's own sentence, word for word, in both; each launcher then describes its
        # lost replicas its own way ("exit 3" and the log locally, the pod's reason on a cluster).
        headline = cluster_message.split("): ")[0] + ")"
        assert headline.endswith(".byzantine)") and local_message.startswith(headline + ": ")
        assert "simulated crash" in local_message  # the crashed node's log, quoted locally


def test_every_scenario_names_replicas_of_its_plan() -> None:
    """A typo in a scenario's replica name would silently test the default state instead."""
    for s in SCENARIOS:
        job = validate_manifest(copy.deepcopy(s.manifest))
        names = {r.name for r in make_plan(job, loopback_for(job)).replicas}
        assert set(s.states) <= names, s.id
