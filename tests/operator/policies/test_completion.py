"""policies/completion.py: the job succeeds once n - f correct servers (peers when decentralized)
finished training; up to f servers may never finish."""

from __future__ import annotations

from typing import Any

import pytest

from garfield_operator import constants as C
from garfield_operator.reconcile import Observed, decide

from support.decisions import IMAGE, T0, apply, running, running_job

# (id, job overrides, replicas that finished, phase)
CASES: list[tuple[str, dict[str, Any], list[str], str]] = [
    ("msmw-below-quorum", {"servers": 4, "server_f": 1}, ["j-server-0", "j-server-1"], C.RUNNING),  # 2 of 4, quorum 3
    ("msmw-quorum", {"servers": 4, "server_f": 1}, ["j-server-0", "j-server-1", "j-server-2"], C.SUCCEEDED),
    ("ssmw-the-server", {}, ["j-server-0"], C.SUCCEEDED),
    ("workers-alone-do-not-finish", {}, [f"j-worker-{i}" for i in range(5)], C.RUNNING),
    ("decentralized-below-quorum", {"servers": None}, [f"j-peer-{i}" for i in range(3)], C.RUNNING),
    ("decentralized-quorum", {"servers": None}, [f"j-peer-{i}" for i in range(4)], C.SUCCEEDED),
]


@pytest.mark.parametrize("overrides, finished, phase", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_completion_quorum(overrides: dict[str, Any], finished: list[str], phase: str) -> None:
    stored, created = running_job(**overrides)
    pods = running(stored, created, **{name: "Succeeded" for name in finished})
    stored = apply(stored, decide(Observed(stored, pods, True, T0), IMAGE))
    assert stored["status"]["phase"] == phase
    assert bool(stored["status"].get("completionTime")) == (phase == C.SUCCEEDED)
