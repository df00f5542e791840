"""MoNNA, SMEA and CAF against their definitions, computed here the long way: distances and
covariances in the vectors' own space (d small), eigenpairs of the d x d covariance, every
subset enumerated; the rules compute from the Gram matrix instead. Inputs are what Byzantine
workers send: colluders' identical vectors, copies of correct ones, far and near outliers.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from garfield.aggregators import aggregate, force_torch
from garfield.aggregators.catalog import MAX_SUBSETS, rule_spec

CASES = 40
BACKENDS = ["compiled", "torch"]


def draw(rng: np.random.Generator, n: int, f: int) -> np.ndarray:
    d = int(rng.integers(2, 6))
    correct = rng.normal(size=(n - f, d)) * rng.uniform(0.5, 2.0, size=d)
    kind = rng.choice(["colluders", "copies", "far", "near", "none"])
    if kind == "colluders":
        byzantine = np.repeat(rng.normal(size=(1, d)) * 3, f, axis=0)
    elif kind == "copies":
        byzantine = correct[rng.integers(0, n - f, size=f)]
    elif kind == "far":
        byzantine = np.full((f, d), 1e4) * rng.choice([-1, 1], size=(f, d))
    elif kind == "near":
        byzantine = correct[:f] + 0.3
    else:
        byzantine = rng.normal(size=(f, d))
    X = np.concatenate([correct, byzantine])
    return X[rng.permutation(n)]


def top_eigenvalue(X: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Top eigenpair of the weighted covariance, and the weighted mean (all in the vectors' space)."""
    mu = weights @ X / weights.sum()
    diffs = X - mu
    cov = (weights[:, None] * diffs).T @ diffs / weights.sum()
    values, vectors = np.linalg.eigh(cov)
    return float(values[-1]), vectors[:, -1], mu


def monna_definition(X: np.ndarray, f: int) -> np.ndarray:
    n = len(X)
    order = sorted(range(n), key=lambda j: (math.dist(X[0], X[j]), j))
    return X[order[: n - f]].mean(axis=0)


def smea_definition(X: np.ndarray, f: int) -> tuple[float, list[tuple[int, ...]]]:
    """The smallest top eigenvalue, and every subset within rounding of it."""
    n = len(X)
    values = {S: top_eigenvalue(X[list(S)], np.ones(n - f))[0] for S in itertools.combinations(range(n), n - f)}
    best = min(values.values())
    return best, [S for S, v in values.items() if v <= best + 1e-9 * max(1.0, abs(best))]


def caf_definition(X: np.ndarray, f: int) -> np.ndarray:
    n = len(X)
    c = np.ones(n)
    best_value, best_mu = np.inf, X.mean(axis=0)
    for _ in range(n + 1):
        if c.sum() <= n - 2 * f + 1e-9:
            break
        value, v, mu = top_eigenvalue(X, c)
        if value < best_value:
            best_value, best_mu = value, mu
        if value <= 0:
            break
        tau = ((X - mu) @ v) ** 2
        tau_max = tau[c > 0].max()
        if tau_max <= 0:
            break
        c = np.clip(c * (1 - tau / tau_max), 0, None)
    return best_mu


def _aggregate(backend: str, name: str, X: np.ndarray, f: int, **kwargs: object) -> torch.Tensor:
    if backend == "torch":
        with force_torch():
            return aggregate(name, torch.from_numpy(X), f, **kwargs)
    return aggregate(name, torch.from_numpy(X), f, **kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_monna_is_the_mean_of_the_n_minus_f_nearest_to_the_first_input(backend: str) -> None:
    rng = np.random.default_rng(21)
    for _ in range(CASES):
        n = int(rng.integers(3, 12))
        f = int(rng.integers(0, (n - 1) // 2 + 1))
        X = draw(rng, n, f)
        got = _aggregate(backend, "monna", X, f).numpy()
        assert np.allclose(got, monna_definition(X, f), atol=1e-9 * max(1.0, np.abs(X).max()))


def test_monna_by_hand() -> None:
    X = torch.tensor([[0.0], [3.0], [-1.0], [1.0], [100.0]], dtype=torch.float64)
    # n=5, f=2: the 3 nearest to the first input (0) are 0, -1 and 1 (equal distances: lower index).
    assert float(aggregate("monna", X, 2)) == 0.0
    assert float(aggregate("monna", X[[1, 0, 2, 3, 4]], 2)) == pytest.approx((3.0 + 1.0 + 0.0) / 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_smea_picks_the_subset_of_smallest_top_eigenvalue(backend: str) -> None:
    rng = np.random.default_rng(22)
    for trial in range(CASES):
        n = int(rng.integers(3, 10))
        f = int(rng.integers(0, (n - 1) // 2 + 1))
        X = draw(rng, n, f)
        info: dict = {}
        got = _aggregate(backend, "smea", X, f, info=info).numpy()
        best, subsets = smea_definition(X, f)
        chosen = tuple(info.get("selected", range(n)))
        assert chosen in subsets, (trial, n, f, chosen, subsets)
        assert np.allclose(got, X[list(chosen)].mean(axis=0), atol=1e-9 * max(1.0, np.abs(X).max()))


def test_smea_ties_go_to_the_lexicographically_smallest_subset() -> None:
    # Rows 0 and 1 are copies, as are 2 and 3: every 3 of those four rows have the same covariance
    # (top eigenvalue 2/9, exactly), so the first subset in lexicographic order wins.
    X = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [50.0, 50.0]], dtype=torch.float64)
    info: dict = {}
    aggregate("smea", X, 2, info=info)
    assert info["selected"] == [0, 1, 2] and info["eigenvalue"] == pytest.approx(2 / 9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_caf_matches_its_definition(backend: str) -> None:
    rng = np.random.default_rng(23)
    for trial in range(CASES):
        n = int(rng.integers(3, 12))
        f = int(rng.integers(0, (n - 1) // 2 + 1))
        X = draw(rng, n, f)
        got = _aggregate(backend, "caf", X, f).numpy()
        expected = caf_definition(X, f)
        assert np.allclose(got, expected, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(X).max())), (trial, n, f)


def test_caf_with_f_zero_is_the_mean_and_removes_far_colluders() -> None:
    rng = np.random.default_rng(24)
    X = rng.normal(size=(9, 4))
    assert np.allclose(aggregate("caf", torch.from_numpy(X), 0).numpy(), X.mean(axis=0))
    X[-3:] = 1e5
    got = aggregate("caf", torch.from_numpy(X), 3).numpy()
    assert np.abs(got).max() < np.abs(X[:6]).max()  # within the correct vectors' range: the colluders got no weight


def test_smea_refuses_a_search_over_too_many_subsets() -> None:
    n, f = 25, 12  # C(25, 12) = 5,200,300 subsets
    assert math.comb(n, f) > MAX_SUBSETS
    errors = rule_spec("smea").check_sizes({}, n, f, "n=25, f=12")
    assert errors == [f"smea searches all C(n, f) = 5,200,300 subsets, more than {MAX_SUBSETS:,}: "
                      "use fewer replies or a smaller f (n=25, f=12)"]
    with pytest.raises(ValueError, match="5,200,300 subsets"):
        aggregate("smea", torch.zeros(n, 3), f)
    assert rule_spec("smea").check_sizes({}, 17, 8, "") == []  # C(17, 8) = 24,310
