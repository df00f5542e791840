"""Simulated Byzantine behaviours for evaluation runs (real nodes sending real bad messages).

`garfield.attacks.catalog` (the `AttackSpec` of each attack: name, typed parameters) is free of
tensor libraries; the behaviours import torch lazily, on first use of `make_worker_attack` /
`make_server_attack`.
"""

from __future__ import annotations

from typing import Any

from garfield.attacks.catalog import SERVER_ATTACKS, WORKER_ATTACKS, AttackSpec, attack_spec

__all__ = [
    "make_worker_attack",
    "make_server_attack",
    "attack_spec",
    "AttackSpec",
    "WORKER_ATTACKS",
    "SERVER_ATTACKS",
]


def make_worker_attack(name: str, params: dict[str, Any] | None = None) -> Any:
    """A `garfield.attacks.worker.WorkerAttack` (see that module for the interface)."""
    from garfield.attacks.worker import make_worker_attack as make

    return make(name, params)


def make_server_attack(name: str, params: dict[str, Any] | None = None) -> Any:
    """A `garfield.attacks.server.ServerAttack` (see that module for the interface)."""
    from garfield.attacks.server import make_server_attack as make

    return make(name, params)
