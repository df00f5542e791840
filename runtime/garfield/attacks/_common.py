"""Shared plumbing of the attacks: parameter checking and framework conversion."""

from __future__ import annotations

from typing import Any, Callable

import torch


def resolve(kind: str, name: str, table: dict[str, dict[str, object]], params: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults of attack `name` overridden by `params`; unknown names or keys raise ValueError."""
    if name not in table:
        raise ValueError(f"unknown {kind} attack {name!r}; known: {', '.join(sorted(table))}")
    params = dict(params or {})
    known = table[name]
    unknown = sorted(set(params) - set(known))
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise ValueError(f"{kind} attack {name}: unknown parameter(s) {', '.join(unknown)} (parameters: {allowed})")
    return {**known, **params}


def number(attack: str, key: str, value: Any, *, positive: bool = False, minimum: float | None = None,
           maximum: float | None = None, integer: bool = False) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and positive and not value > 0:
        ok = False
    if ok and minimum is not None and value < minimum:
        ok = False
    if ok and maximum is not None and value > maximum:
        ok = False
    if not ok:
        bounds = []
        if positive:
            bounds.append("> 0")
        if minimum is not None:
            bounds.append(f">= {minimum}")
        if maximum is not None:
            bounds.append(f"<= {maximum}")
        what = "an integer" if integer else "a number"
        raise ValueError(f"attack {attack}: {key} must be {what}{' ' + ' and '.join(bounds) if bounds else ''}, got {value!r}")
    return value


def seed_param(attack: str, value: Any) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"attack {attack}: seed must be an integer or null, got {value!r}")
    return value


def to_torch(x: Any) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """A torch view of a torch/TensorFlow/numpy tensor (DLPack for TF: same device buffer) and
    the function converting a torch result back."""
    from garfield.aggregators._bridge import _is_numpy, _is_tf, _to_numpy, _torch_to_tf, _tf_to_torch

    if isinstance(x, torch.Tensor):
        return x.detach(), lambda t: t
    if _is_tf(x):
        return _tf_to_torch(x), _torch_to_tf
    if _is_numpy(x):
        return torch.from_numpy(x), _to_numpy
    raise TypeError(f"attacks work on torch/tf tensors or numpy arrays, got {type(x).__name__}")


def peers_matrix(peers: Any) -> torch.Tensor | None:
    """(k, d) torch tensor of the round's honest vectors (given as a tensor or a list), or None."""
    if peers is None:
        return None
    if isinstance(peers, (list, tuple)):
        if len(peers) == 0:
            return None
        return torch.stack([to_torch(p)[0].reshape(-1) for p in peers])
    X = to_torch(peers)[0]
    return X.reshape(1, -1) if X.dim() == 1 else X


class Rng:
    """A torch generator on the tensors' device, created on first use (seeded or not)."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._gens: dict[str, torch.Generator] = {}

    def get(self, device: torch.device) -> torch.Generator:
        key = str(device)
        gen = self._gens.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            if self.seed is None:
                gen.seed()
            else:
                gen.manual_seed(self.seed)
            self._gens[key] = gen
        return gen


def fill_value(attack: str, value: Any) -> float:
    table = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
    if value not in table:
        raise ValueError(f"attack {attack}: value must be one of 'nan', 'inf', '-inf', got {value!r}")
    return table[value]
