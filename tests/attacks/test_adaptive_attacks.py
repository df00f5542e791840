"""The adaptive attacks (optimal-little, optimal-empire): the line search's schedule, that they aim
at the defence the node hands them, and that they are at least as harmful as the fixed-scale
attack wherever the harm grows with the scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from garfield.aggregators import aggregate
from garfield.attacks import Defence, make_worker_attack

N, F = 10, 2


def harm(rule: str, honest: torch.Tensor, attack_vector: torch.Tensor, pre: tuple = ()) -> float:
    """What the attack does to a quorum of n - 2f honest vectors and f copies of its vector."""
    X = torch.cat([honest[: N - 2 * F], attack_vector.expand(F, -1)])
    return float(torch.linalg.vector_norm(aggregate(rule, X, F, pre=pre) - honest.mean(0)))


def peers(seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(N - F, 40)))


@pytest.mark.parametrize("name", ["optimal-little", "optimal-empire"])
def test_against_average_the_search_doubles_its_step_every_time(name: str) -> None:
    """The harm against averaging grows without bound, so every expansion step is kept: after the
    start and 19 steps of 10, 20, 40, ... the scale is 10 (2^19 - 1)."""
    attack = make_worker_attack(name, {})  # no defence given: averaging
    P = peers(1)
    attack.corrupt(P[0], P, N, F, 0)
    assert attack.last_scale == 10.0 * (2**19 - 1)


def test_the_search_contracts_once_the_harm_stops_growing() -> None:
    attack = make_worker_attack("optimal-little", {"evals": 4, "start": 1.0, "delta": 2.0, "ratio": 0.75},
                                Defence("median"))
    P = peers(2)
    attack.corrupt(P[0], P, N, F, 0)
    # median saturates: start 1, then 3 (more harm: kept, step 4), 7 (saturated, equal: not kept,
    # step 3), then 3 + 3 = 6: kept only if strictly more harmful than 3.
    tried = {s: harm("median", P, P.mean(0) + P.std(0, unbiased=False) * s) for s in (1.0, 3.0, 7.0, 6.0)}
    best = 1.0
    for s in (3.0, 7.0, 6.0):
        if tried[s] > tried[best]:
            best = s
    assert attack.last_scale == best


@pytest.mark.parametrize("rule", ["median", "trimmed-mean"])
def test_at_least_as_harmful_as_the_fixed_attacks_where_harm_grows_with_the_scale(rule: str) -> None:
    for seed in range(5):
        P = peers(10 + seed)
        optimal = make_worker_attack("optimal-little", {}, Defence(rule)).corrupt(P[0], P, N, F, 0)
        plain = make_worker_attack("little", {}).corrupt(P[0], P, N, F, 0)
        assert harm(rule, P, optimal) >= harm(rule, P, plain) - 1e-12
        optimal = make_worker_attack("optimal-empire", {}, Defence(rule)).corrupt(P[0], P, N, F, 0)
        plain = make_worker_attack("empire", {}).corrupt(P[0], P, N, F, 0)
        assert harm(rule, P, optimal) >= harm(rule, P, plain) - 1e-12


def test_it_aims_at_the_defence_it_is_given_pre_aggregation_included() -> None:
    P = peers(3)
    plain = make_worker_attack("optimal-empire", {}, Defence("median"))
    mixed = make_worker_attack("optimal-empire", {}, Defence("median", {}, ({"name": "nnm"},)))
    plain.corrupt(P[0], P, N, F, 0)
    mixed.corrupt(P[0], P, N, F, 0)
    # The scales differ because the harm functions differ; each is what its own search found.
    assert plain.last_scale != mixed.last_scale
    for attack, pre in ((plain, ()), (mixed, ({"name": "nnm"},))):
        chosen = harm("median", P, P.mean(0) * -attack.last_scale, pre)
        assert chosen >= harm("median", P, P.mean(0) * -attack.start, pre)

