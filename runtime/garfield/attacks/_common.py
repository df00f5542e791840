"""Shared plumbing of the attacks: the catalog conformance check, framework conversion, seeded
generators. Parameters are checked by `garfield.attacks.catalog.resolve`, not here."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, TypeVar, cast

import torch

from garfield.attacks.catalog import BY_SIDE, AttackEntry, AttackSide, resolve
from garfield.params import conformance_errors as params_conformance

AttackClass = TypeVar("AttackClass", bound=type)


def conformance_errors(specs: Mapping[str, AttackEntry], classes: Mapping[str, type]) -> list[str]:
    """What keeps the attack `classes` from matching the catalog's `specs`
    (`garfield.params.conformance_errors` on their constructors, whose signatures omit self)."""
    return params_conformance(specs, classes, leading=0, noun="the constructor")


def implementations(side: AttackSide, classes: Iterable[AttackClass]) -> dict[str, AttackClass]:
    """The `side` attack classes by their `name`, checked against the catalog when the module
    that defines them is imported: a disagreement is an AssertionError then (raised, not asserted,
    so that it holds under python -O too), never a surprise at a job's first step."""
    table = {cast(Any, c).name: c for c in classes}  # each class names its catalog entry
    mismatch = conformance_errors(BY_SIDE[side], table)
    if mismatch:
        raise AssertionError(f"{side} attack catalog and implementations disagree: " + "; ".join(mismatch))
    return table


def build(side: AttackSide, table: Mapping[str, AttackClass], name: str, params: Mapping[str, Any] | None) -> Any:
    """The `side` attack `name` built with `params` over its catalog defaults; ValueError on an
    unknown name or parameter and on an out-of-range value (the catalog's check, as in
    `garfield validate`)."""
    values = resolve(side, name, params)  # first: it names an unknown attack clearly
    return table[name](**values)


def to_torch(x: Any) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """A torch view of a torch/TensorFlow/numpy tensor (DLPack for TF: same device buffer) and
    the function converting a torch result back."""
    from garfield.aggregators._bridge import _is_numpy, _is_tf, _tf_to_torch, _to_numpy, _torch_to_tf

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
                gen.manual_seed(int(self.seed))
            self._gens[key] = gen
        return gen


# The catalog's `value` choices of the nan attacks, as floats.
FILL_VALUES: dict[str, float] = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
