"""`garfield.lifecycle.restart_decision`: the one rule by which the operator recreates failed pods
and `garfield run` restarts crashed processes (runPolicy.restartPolicy, backoffLimit)."""

from __future__ import annotations

from typing import Any

import pytest

from garfield.lifecycle import Restart, restart_decision
from garfield.spec.validation import validate_manifest

from support import manifests


def spec(**run_policy: Any) -> Any:
    return validate_manifest(manifests.job(run_policy=run_policy or None)).spec


@pytest.mark.parametrize("policy,restarts,failed,action", [
    ({}, 0, [], Restart.NOTHING),
    ({}, 0, ["j-server-0 (exit 1)"], Restart.RESTART),
    ({}, 2, ["j-worker-0 (exit 1)"], Restart.RESTART),  # 3 in all: backoffLimit 3 (the default) allows it
    ({}, 3, ["j-worker-0 (exit 1)"], Restart.BACKOFF_LIMIT),
    ({"backoffLimit": 1}, 0, ["a (exit 1)", "b (exit 1)"], Restart.BACKOFF_LIMIT),
    ({"restartPolicy": "Never"}, 0, ["j-server-0 (exit 1)"], Restart.NEVER),
    ({"restartPolicy": "Never", "backoffLimit": 0}, 5, ["j-server-0 (exit 1)"], Restart.NEVER),
])
def test_restart_decisions(policy: dict[str, Any], restarts: int, failed: list[str], action: Restart) -> None:
    assert restart_decision(spec(**policy), restarts, failed).action is action


def test_the_backoff_limit_message_names_the_replicas_and_the_limit() -> None:
    decision = restart_decision(spec(backoffLimit=2), 2, ["j-server-1 (exit 1)"])
    assert decision.message == "2 restarts so far; restarting j-server-1 (exit 1) would exceed runPolicy.backoffLimit=2"
