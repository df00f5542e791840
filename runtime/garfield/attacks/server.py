"""Byzantine server behaviours: what a Byzantine server sends instead of its model.

`corrupt(model, step)` gets the server's honest flat model (torch or TensorFlow) and returns the
vector to send (same framework, device and dtype), or None to send nothing.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

from garfield.attacks._common import FILL_VALUES, Rng, build, implementations, to_torch
from garfield.attacks.catalog import AttackSide


class TorchServerAttack:
    """Base class of the implementations, which work on torch views of the tensors; it satisfies
    `garfield.attacks.types.ServerAttack`, the type the protocol sees. `silent`: the server
    answers nothing. Constructors take the catalog's parameters already checked
    (`catalog.resolve`)."""

    name = ""
    silent = False

    def corrupt(self, model: Any, step: int) -> Any:
        x, back = to_torch(model)
        res = self._corrupt(x.reshape(-1), step)
        return None if res is None else back(res)

    def _corrupt(self, x: torch.Tensor, step: int) -> torch.Tensor | None:
        raise NotImplementedError


class RandomModel(TorchServerAttack):
    """A model of i.i.d. N(0, std^2) parameters (Garfield's random Byzantine server)."""

    name = "random"

    def __init__(self, std: float, seed: int | None) -> None:
        self.std = std
        self.rng = Rng(seed)

    def _corrupt(self, x: torch.Tensor, step: int) -> torch.Tensor | None:
        return torch.randn(x.shape, generator=self.rng.get(x.device), device=x.device, dtype=x.dtype).mul_(self.std)


class Reversed(TorchServerAttack):
    """-scale x the model (Garfield's reversed model; scale 1 flips it, larger scales blow it up)."""

    name = "reversed"

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def _corrupt(self, x: torch.Tensor, step: int) -> torch.Tensor | None:
        return x.mul(-self.scale)


class Stale(TorchServerAttack):
    """Sends the model it had `delay` calls ago (its oldest one until it has that many): a slow or
    replaying server (asynchronous staleness). Holds up to `delay` model copies."""

    name = "stale"

    def __init__(self, delay: int) -> None:
        self.delay = delay
        self.history: deque[torch.Tensor] = deque(maxlen=self.delay + 1)

    def _corrupt(self, x: torch.Tensor, step: int) -> torch.Tensor | None:
        self.history.append(x.clone())
        return self.history[0].clone()


class Silent(TorchServerAttack):
    """Never answers (a crashed or muted server)."""

    name = "silent"
    silent = True

    def __init__(self) -> None:
        pass

    def _corrupt(self, x: torch.Tensor, step: int) -> torch.Tensor | None:
        return None


class NonFiniteModel(TorchServerAttack):
    """A model full of NaN (or +inf / -inf)."""

    name = "nan"

    def __init__(self, value: str) -> None:
        self.value = FILL_VALUES[value]

    def _corrupt(self, x: torch.Tensor, step: int) -> torch.Tensor | None:
        return torch.full_like(x, self.value)


_CLASSES: dict[str, type[TorchServerAttack]] = implementations(
    AttackSide.SERVER, (RandomModel, Reversed, Stale, Silent, NonFiniteModel))


def make_server_attack(name: str, params: dict[str, Any] | None = None) -> TorchServerAttack:
    """The server attack `name` with `params` over its catalog defaults; ValueError on an unknown
    name or parameter and on an out-of-range value (the catalog's check, as in `garfield validate`)."""
    attack: TorchServerAttack = build(AttackSide.SERVER, _CLASSES, name, params)
    return attack
