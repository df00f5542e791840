"""The coordinate-wise rules against their definitions, on the inputs Byzantine workers send:
colluders' duplicated rows, ties, signed zeros, huge and tiny magnitudes.

Each case is a seeded draw (fixed seeds, a bounded count, so CI stays fast and a failure replays).
The expected value is computed from the definition by brute force, per coordinate, in plain
Python, not from the kernels' shortcuts; both backends (the compiled kernels and the torch path
that GPUs take) must meet it. For the rules that average "the w values closest to a centre", any
w-subset that is closest up to rounding is accepted (a near-tie may go either way after rounding);
exact ties are pinned by hand-computed cases with exactly representable values.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from garfield.aggregators import aggregate, force_torch

BACKENDS = ["compiled", "torch"]
CASES = 60  # matrices per rule and backend
COLUMNS = 7  # coordinates per matrix (each drawn on its own), across the kernels' blocks

# What Byzantine workers send, per coordinate: far values of both signs, tiny ones, signed zeros,
# and copies of a correct value (colluders agree on one vector).
HUGE, TINY = 1e30, 1e-30


def draw_column(rng: random.Random, n: int, f: int) -> list[float]:
    """n values: n - f correct ones (few distinct small values: many ties) and f Byzantine ones."""
    palette = [rng.choice([-2.0, -1.0, -0.5, -0.0, 0.0, 0.25, 1.0, 3.0]) for _ in range(3)]
    correct = [rng.choice(palette) + (rng.choice([0.0, 0.0, 1e-9, -1e-9]) if rng.random() < 0.3 else 0.0)
               for _ in range(n - f)]
    mode = rng.choice(["huge", "-huge", "split", "tiny", "copies", "zeros", "near"])
    if mode == "huge":
        byzantine = [HUGE] * f
    elif mode == "-huge":
        byzantine = [-HUGE] * f
    elif mode == "split":
        byzantine = [rng.choice([HUGE, -HUGE, 1e15, -1e15]) for _ in range(f)]
    elif mode == "tiny":
        byzantine = [rng.choice([TINY, -TINY]) for _ in range(f)]
    elif mode == "copies":
        byzantine = [rng.choice(correct)] * f
    elif mode == "zeros":
        byzantine = [rng.choice([0.0, -0.0]) for _ in range(f)]
    else:  # just outside the correct values, where a window's edge is decided
        byzantine = [max(correct) + 0.5 * (i + 1) for i in range(f)]
    values = correct + byzantine
    rng.shuffle(values)
    return values


def draw(rng: random.Random) -> tuple[list[list[float]], int]:
    f = rng.randint(1, 3)
    n = rng.randint(2 * f + 1, 2 * f + 5)
    columns = [draw_column(rng, n, f) for _ in range(COLUMNS)]
    return [[columns[j][i] for j in range(COLUMNS)] for i in range(n)], f


def median_of(values: list[float]) -> float:
    v = sorted(values)
    m = len(v)
    return 0.5 * v[(m - 1) // 2] + 0.5 * v[m // 2]


def trimmed_of(values: list[float], f: int) -> float:
    v = sorted(values)
    return math.fsum(v[f : len(v) - f]) / (len(v) - 2 * f)


def mean_bound(window: list[float]) -> float:
    """How far a floating-point mean of `window` may be from the exact one (summation error)."""
    return 1e-12 * math.fsum(abs(x) for x in window) / len(window) + 1e-300


def closest_means(values: list[float], centre: float, w: int) -> list[tuple[float, float]]:
    """(mean, bound) of every w-subset of `values` that is closest to `centre` up to rounding:
    no value left out is nearer than a value kept (beyond a relative 1e-12)."""
    v = sorted(values)
    m = len(v)
    out = []
    for s in range(m - w + 1):
        kept, left_out = v[s : s + w], v[:s] + v[s + w :]
        worst_kept = max(abs(x - centre) for x in kept)
        best_out = min((abs(x - centre) for x in left_out), default=math.inf)
        slack = 1e-12 * (abs(centre) + worst_kept) + 1e-300
        if worst_kept <= best_out + slack:
            out.append((math.fsum(kept) / w, mean_bound(kept)))
    return out


def run(name: str, X: list[list[float]], f: int, backend: str) -> list[float]:
    T = torch.tensor(X, dtype=torch.float64)
    if backend == "torch":
        with force_torch():
            return aggregate(name, T, f).tolist()
    return aggregate(name, T, f).tolist()


def cases(seed: int) -> list[tuple[list[list[float]], int]]:
    rng = random.Random(seed)
    return [draw(rng) for _ in range(CASES)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["median", "trimmed-mean"])
def test_order_statistics_meet_their_definition(name: str, backend: str) -> None:
    for X, f in cases(seed=20261204):
        got = run(name, X, f, backend)
        for j, value in enumerate(got):
            column = [row[j] for row in X]
            if name == "median":
                want, bound = median_of(column), 0.0
            else:
                kept = sorted(column)[f : len(column) - f]
                want, bound = trimmed_of(column, f), mean_bound(kept)
            assert abs(value - want) <= bound, (name, f, column, value, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["meamed", "phocas"])
def test_closest_value_means_meet_their_definition(name: str, backend: str) -> None:
    """meamed: the mean of the n - f values closest to the median; phocas: closest to the
    f-trimmed mean."""
    for X, f in cases(seed=4122026):
        got = run(name, X, f, backend)
        for j, value in enumerate(got):
            column = [row[j] for row in X]
            centre = median_of(column) if name == "meamed" else trimmed_of(column, f)
            valid = closest_means(column, centre, len(column) - f)
            assert valid, column
            assert any(abs(value - mean) <= bound for mean, bound in valid), (name, f, column, value, valid)


# Exact ties, with exactly representable values: equal distances keep the smaller value.
TIES = [
    # (rule, column, f, expected): the case, colluders duplicating -1
    ("meamed", [-1.0, -1.0, 0.0, 0.1, 5.0], 2, (0.0 + 0.1 - 1.0) / 3),
    ("meamed", [-1.0, -1.0, 0.0, 0.1, 5.0], 1, (-1.0 - 1.0 + 0.0 + 0.1) / 4),
    ("meamed", [-1.0, 0.0, 1.0], 1, -0.5),  # -1 and 1 both at distance 1 from 0: -1 kept
    ("meamed", [-2.0, -1.0, 1.0, 2.0, 0.0], 2, 0.0),  # 0, then -1 and 1 (distance 1); not the 2s
    ("phocas", [-1.0, 0.0, 1.0], 1, -0.5),
    ("meamed", [-1e30, 1.0, 2.0, 3.0, 4.0], 1, 2.5),  # no prefix sum: -1e30 cancels nothing
    ("phocas", [-1e30, 1.0, 2.0, 3.0, 4.0], 1, 2.5),
    ("meamed", [1e30, 1e30, 1.0, 2.0, 3.0], 2, 2.0),
    ("phocas", [-1e30, 1e30, 1.0, 2.0, 3.0], 2, 2.0),
    ("meamed", [-0.0, 0.0, -0.0, 5.0, -5.0], 2, 0.0),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, column, f, expected", TIES, ids=[f"{t[0]}-{i}" for i, t in enumerate(TIES)])
def test_exact_ties_and_far_values(name: str, column: list[float], f: int, expected: float, backend: str) -> None:
    X = [[x, -x] for x in column]  # the mirrored coordinate breaks ties the other way
    got = run(name, X, f, backend)
    assert got[0] == pytest.approx(expected, abs=1e-15), (column, got)
    mirrored = next(m for m, _ in closest_means([-x for x in column],
                                                 median_of([-x for x in column]) if name == "meamed"
                                                 else trimmed_of([-x for x in column], f), len(column) - f))
    assert got[1] == pytest.approx(mirrored, abs=1e-15), (column, got)
