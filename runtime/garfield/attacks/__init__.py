"""Simulated Byzantine behaviours for evaluation runs (real nodes sending real bad messages).

`garfield.attacks.catalog` (the `AttackEntry` of each attack: name, typed parameters) is free of
tensor libraries, and so is `garfield.attacks.types` (the `WorkerAttack`, `ServerAttack` and
`LabelTransform` protocols the runtime types its seams with); the behaviours import torch
lazily, on first use of `make_worker_attack` / `make_server_attack`.
"""

from __future__ import annotations

from typing import Any

from garfield.attacks.catalog import SERVER_ATTACKS, WORKER_ATTACKS, AttackEntry, attack_entry
from garfield.attacks.types import Defence, LabelTransform, ServerAttack, WorkerAttack

__all__ = [
    "make_worker_attack",
    "make_server_attack",
    "attack_entry",
    "AttackEntry",
    "Defence",
    "LabelTransform",
    "ServerAttack",
    "WorkerAttack",
    "WORKER_ATTACKS",
    "SERVER_ATTACKS",
]


def make_worker_attack(name: str, params: dict[str, Any] | None = None, defence: Defence | None = None) -> WorkerAttack:
    """The worker attack `name` (an implementation of `garfield.attacks.worker`); `defence` is the
    rule the attacked quorum uses, which the adaptive attacks aim at."""
    from garfield.attacks.worker import make_worker_attack as make

    return make(name, params, defence)


def make_server_attack(name: str, params: dict[str, Any] | None = None) -> ServerAttack:
    """The server attack `name` (an implementation of `garfield.attacks.server`)."""
    from garfield.attacks.server import make_server_attack as make

    return make(name, params)
