"""`garfield.lifecycle.decide` alone, as a table: which replica states fail, finish or continue a job.

tests/lifecycle/test_one_lifecycle.py shows both launchers reach these verdicts from their own
observations; this file pins the rule itself, including the edges neither example job reaches.
"""

from __future__ import annotations

from typing import Any

import pytest

from garfield.lifecycle import Health, Phase, Reason, ReplicaState, decide
from garfield.spec.kinds import Role, Topology
from garfield.spec.validation import validate_manifest

from support import manifests

R, F, L, S = Health.RUNNING, Health.FINISHED, Health.LOST, Health.STARTING


def spec(servers: int | None, server_f: int, workers: int, worker_f: int,
         server_attack: int = 0, worker_attack: int = 0) -> Any:
    manifest = manifests.job(servers=servers, server_f=server_f, server_gar=None, workers=workers, worker_f=worker_f,
                             gar=None, training={"steps": 10},
                             attack=manifests.attack(workers=(worker_attack, "signflip") if worker_attack else None,
                                                     servers=(server_attack, "random") if server_attack else None) or None)
    return validate_manifest(manifest).spec


def states(spec: Any, servers: str = "", workers: str = "") -> list[ReplicaState]:
    """One letter per replica in index order (R running, F finished, L lost, S starting)."""
    letters = {"R": R, "F": F, "L": L, "S": S}
    out = []
    for role, text in ((spec.topology.primary_role, servers), (Role.WORKER, workers)):
        if spec.topology is Topology.DECENTRALIZED and role is Role.WORKER:
            continue
        n = spec.role_spec(role).replicas
        attack = spec.attack_on(role)
        bad = set(attack.indices(n)) if attack else set()
        text = text.ljust(n, "R")
        out += [ReplicaState(f"j-{role}-{i}", role, i in bad, letters[text[i]]) for i in range(n)]
    return out


CASES = [
    # (id, spec args, servers, workers, expected phase or None)
    ("healthy", (4, 1, 5, 1), "", "", None),
    ("starting-is-not-lost", (4, 1, 5, 1), "SSSS", "SSSSS", None),
    ("f-workers-lost", (4, 1, 5, 1), "", "L", None),
    ("f-plus-one-workers-lost", (4, 1, 5, 1), "", "LL", Phase.FAILED),
    ("f-servers-lost", (4, 1, 5, 1), "L", "", None),
    ("f-plus-one-servers-lost", (4, 1, 5, 1), "LL", "", Phase.FAILED),
    ("attacker-uses-the-budget", (4, 1, 5, 1, 0, 1), "", "L", Phase.FAILED),
    ("lost-attacker-is-no-fault", (4, 1, 5, 1, 0, 1), "", "RRRRL", None),
    ("attackers-alone-never-fail", (4, 1, 7, 2, 1, 2), "", "", None),
    ("quorum-finished", (4, 1, 5, 1), "FFF", "", Phase.SUCCEEDED),
    ("one-short-of-quorum", (4, 1, 5, 1), "FF", "", None),
    ("byzantine-server-finishing-does-not-count", (4, 1, 5, 1, 1, 0), "FFRF", "", None),
    ("every-correct-server-finished", (4, 1, 5, 1, 1, 0), "FFFR", "", Phase.SUCCEEDED),
    ("finished-with-f-lost", (4, 1, 5, 1), "FFFL", "", Phase.SUCCEEDED),
    ("failure-wins-over-success", (4, 1, 5, 0), "FFFF", "L", Phase.FAILED),
    ("workers-finishing-is-not-success", (4, 1, 5, 1), "", "FFFFF", None),
    ("ssmw-single-server", (1, 0, 4, 1), "F", "", Phase.SUCCEEDED),
    ("decentralized-peers", (None, 0, 5, 1), "FFFF", "", Phase.SUCCEEDED),
    ("decentralized-peer-lost-beyond-f", (None, 0, 5, 1), "LL", "", Phase.FAILED),
]


@pytest.mark.parametrize(("case", "args", "servers", "workers", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decide(case: str, args: tuple[int, ...], servers: str, workers: str, expected: Phase | None) -> None:
    s = spec(*args)
    verdict = decide(s, states(s, servers, workers))
    assert (verdict.phase if verdict else None) == expected
    if verdict is not None:
        assert verdict.phase.terminal
        assert verdict.reason is (Reason.SUCCEEDED if expected is Phase.SUCCEEDED else Reason.TOO_MANY_FAILURES)


def test_failure_message_names_role_f_and_each_lost_replica() -> None:
    s = spec(4, 1, 5, 1, 0, 1)
    lost = [ReplicaState("j-worker-0", Role.WORKER, False, L, "exit 3")]
    others = [x for x in states(s) if x.name != "j-worker-0"]
    verdict = decide(s, lost + others)
    assert verdict is not None and verdict.fault is not None
    assert verdict.message == ("1 worker lost besides 1 simulated Byzantine, 2 faulty, more than the f=1 the job "
                               "tolerates (spec.workers.byzantine): j-worker-0 (exit 3)")


@pytest.mark.parametrize("phase", list(Phase))
def test_terminal_predicate(phase: Phase) -> None:
    assert phase.terminal == (phase in (Phase.SUCCEEDED, Phase.FAILED))
