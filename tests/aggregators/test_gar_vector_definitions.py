"""The rules that select whole vectors (Krum, Multi-Krum, MDA, Aksel) against their definitions,
computed by brute force from the inputs' own differences (not from the Gram matrix the rules use),
on what Byzantine workers send: colluders' identical vectors, copies of a correct vector, far
vectors of huge magnitude, zeros. Both backends.

Where several selections meet the definition (ties), any of them is accepted up to rounding; with
small integer inputs every distance is exact, and the documented tie rule (the lowest index, the
lexicographically smallest set) is checked exactly. Seeded draws, a bounded count.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from garfield.aggregators import aggregate, force_torch

BACKENDS = ["compiled", "torch"]
CASES = 60
HUGE = 2.0**40


def draw(rng: random.Random, min_n: int) -> tuple[np.ndarray, int, bool]:
    """(inputs, f, exact): correct rows of small integers, then Byzantine rows; `exact` when every
    value is a small integer (every squared distance is then an exact float)."""
    f = rng.randint(1, 2)
    n = rng.randint(max(min_n(f), 2 * f + 1), max(min_n(f), 2 * f + 1) + 3)
    d = rng.randint(1, 4)
    correct = [[float(rng.randint(-3, 3)) for _ in range(d)] for _ in range(n - f)]
    mode = rng.choice(["collude", "copy", "huge", "zeros", "near"])
    if mode == "collude":
        bad = [[float(rng.randint(-9, 9)) for _ in range(d)]] * f
    elif mode == "copy":
        bad = [list(rng.choice(correct)) for _ in range(f)]
    elif mode == "huge":
        bad = [[rng.choice([HUGE, -HUGE, 1.0]) for _ in range(d)] for _ in range(f)]
    elif mode == "zeros":
        bad = [[0.0] * d for _ in range(f)]
    else:
        bad = [[v + 1.0 for v in rng.choice(correct)] for _ in range(f)]
    rows = correct + bad
    rng.shuffle(rows)
    return np.array(rows, dtype=np.float64), f, mode != "huge"


def sqdist(X: np.ndarray) -> np.ndarray:
    diff = X[:, None, :] - X[None, :, :]
    return (diff * diff).sum(axis=2)


def krum_scores(X: np.ndarray, f: int) -> np.ndarray:
    D = sqdist(X)
    n = len(X)
    k = n - f - 2
    return np.array([np.sort(np.delete(D[i], i))[:k].sum() for i in range(n)])


def run(name: str, X: np.ndarray, f: int, backend: str, **params: object) -> tuple[np.ndarray, list[int]]:
    info: dict = {}
    T = torch.tensor(X)
    if backend == "torch":
        with force_torch():
            out = aggregate(name, T, f, info=info, **params)
    else:
        out = aggregate(name, T, f, info=info, **params)
    return out.numpy(), list(info["selected"])


def tol(values: np.ndarray) -> float:
    return 1e-9 * float(np.abs(values).max(initial=0.0)) + 1e-12


def cases(seed: int, min_n) -> list[tuple[np.ndarray, int, bool]]:
    rng = random.Random(seed)
    return [draw(rng, min_n) for _ in range(CASES)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_krum_selects_a_minimum_score_input(backend: str) -> None:
    for X, f, exact in cases(1, lambda f: 2 * f + 3):
        out, selected = run("krum", X, f, backend)
        scores = krum_scores(X, f)
        (i,) = selected
        assert scores[i] <= scores.min() + tol(scores), (X, f, scores, i)
        if exact:
            assert i == int(np.flatnonzero(scores == scores.min())[0]), (X, f, scores, i)  # the lowest index
        assert np.array_equal(out, X[i])


@pytest.mark.parametrize("backend", BACKENDS)
def test_multi_krum_averages_the_inputs_of_lowest_score(backend: str) -> None:
    for X, f, exact in cases(2, lambda f: 2 * f + 3):
        m = len(X) - f
        out, selected = run("multi-krum", X, f, backend)
        scores = krum_scores(X, f)
        rest = sorted(set(range(len(X))) - set(selected))
        assert len(selected) == m
        assert max(scores[selected]) <= min(scores[rest], default=np.inf) + tol(scores), (X, f, scores, selected)
        if exact:
            assert selected == sorted(np.argsort(scores, kind="stable")[:m].tolist())
        assert np.allclose(out, X[selected].mean(axis=0), rtol=1e-12, atol=tol(X))


@pytest.mark.parametrize("backend", BACKENDS)
def test_mda_averages_a_subset_of_minimum_diameter(backend: str) -> None:
    for X, f, exact in cases(3, lambda f: 2 * f + 1):
        k = len(X) - f
        out, selected = run("mda", X, f, backend)
        D = sqdist(X)
        diameters = {s: max((D[i, j] for i, j in itertools.combinations(s, 2)), default=0.0)
                     for s in itertools.combinations(range(len(X)), k)}
        best = min(diameters.values())
        assert diameters[tuple(sorted(selected))] <= best + tol(D), (X, f, selected)
        if exact:
            assert tuple(sorted(selected)) == min(s for s, v in diameters.items() if v == best)  # lexicographic
        assert np.allclose(out, X[sorted(selected)].mean(axis=0), rtol=1e-12, atol=tol(X))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["mid", "n-f"])
def test_aksel_averages_the_inputs_closest_to_the_median(backend: str, mode: str) -> None:
    for X, f, _ in cases(4, lambda f: 2 * f + 1):
        c = (len(X) + 1) // 2 if mode == "mid" else len(X) - f
        out, selected = run("aksel", X, f, backend, mode=mode)
        centre = np.median(X, axis=0)
        dist = ((X - centre) ** 2).sum(axis=1)
        rest = sorted(set(range(len(X))) - set(selected))
        assert len(selected) == c
        assert max(dist[selected]) <= min(dist[rest], default=np.inf) + tol(dist), (X, f, dist, selected)
        assert np.allclose(out, X[selected].mean(axis=0), rtol=1e-12, atol=tol(X))
