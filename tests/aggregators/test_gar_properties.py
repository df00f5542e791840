"""Properties every rule must have: invariance, robustness to far outliers, exactness of MDA,
optimality of the geometric median, agreement of backends, frameworks and precisions, and the
non-finite policy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from garfield.aggregators import aggregate, force_torch, names

ROBUST = [r for r in names() if r != "average"]


def setting(name: str) -> tuple[int, int]:
    """(n, f) at the rule's tightest resilience condition with f = 2."""
    # centered clipping's bias is O(f tau / n) per step: give it a few more honest inputs.
    return {"krum": (7, 2), "multi-krum": (7, 2), "bulyan": (11, 2), "centered-clipping": (9, 2)}.get(name, (5, 2))


def params_for(name: str) -> dict:
    if name == "centered-clipping":
        return {"tau": 0.1, "iterations": 200}
    if name == "condense":
        return {"seed": 11}
    if name == "geometric-median":
        return {"tolerance": 1e-10}
    return {}


# condense and monna treat the first input as the node's own vector: deliberately not invariant.
@pytest.mark.parametrize("name", [r for r in names() if r not in ("condense", "monna")])
def test_permutation_invariance(name):
    gen = torch.Generator().manual_seed(1)
    n, f = setting(name)
    X = torch.randn(n, 33, generator=gen, dtype=torch.float64)
    ref = aggregate(name, X, f, **params_for(name))
    for seed in range(3):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        assert torch.allclose(aggregate(name, X[perm], f, **params_for(name)), ref, atol=1e-9), name


@pytest.mark.parametrize("backend", ["compiled", "torch"])
@pytest.mark.parametrize("name", ROBUST)
def test_far_identical_outliers_stay_within_honest_spread(name, backend):
    gen = torch.Generator().manual_seed(2)
    n, f = setting(name)
    honest = torch.randn(n - f, 16, generator=gen, dtype=torch.float64)
    X = torch.cat([honest, torch.full((f, 16), 1e6, dtype=torch.float64)])  # outliers last
    if backend == "torch":
        with force_torch():
            out = aggregate(name, X, f, **params_for(name))
    else:
        out = aggregate(name, X, f, **params_for(name))
    # Spread: for rules working on whole vectors, the ball around the honest mean holding every
    # honest vector; for rules keeping coordinates or averaging honest vectors, the per-coordinate
    # range of the honest values.
    if name in ("geometric-median", "centered-clipping", "krum", "multi-krum", "mda", "aksel", "monna", "smea", "caf"):
        center = honest.mean(0)
        assert (out - center).norm() <= (honest - center).norm(dim=1).max() + 1e-9, (name, out)
    if name not in ("geometric-median", "centered-clipping"):
        lo, hi = honest.min(0).values, honest.max(0).values
        assert bool(((out >= lo - 1e-9) & (out <= hi + 1e-9)).all()), (name, out)


@pytest.mark.parametrize("name, params", [("krum", {}), ("multi-krum", {}), ("mda", {}), ("aksel", {"mode": "n-f"}),
                                          ("monna", {}), ("smea", {})])
def test_selection_rules_return_the_mean_of_honest_vectors(name, params):
    gen = torch.Generator().manual_seed(3)
    n, f = setting(name)
    honest = torch.randn(n - f, 20, generator=gen, dtype=torch.float64)
    X = torch.cat([honest[:2], torch.full((f, 20), -1e6, dtype=torch.float64), honest[2:]])
    info: dict = {}
    out = aggregate(name, X, f, info=info, **params)
    chosen = X[info["selected"]]
    assert all(i not in (2, 3) for i in info["selected"])
    assert torch.allclose(out, chosen.mean(0), atol=1e-12)
    if name == "krum":
        assert len(info["selected"]) == 1
    else:
        assert torch.allclose(out, honest.mean(0), atol=1e-12)


def brute_force_mda(X: np.ndarray, f: int) -> tuple[float, tuple[int, ...]]:
    n = len(X)
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    best = (np.inf, ())
    for subset in itertools.combinations(range(n), n - f):
        diam = max((D[i, j] for i, j in itertools.combinations(subset, 2)), default=0.0)
        if diam < best[0]:
            best = (diam, subset)
    return best


def test_exact_mda_matches_brute_force():
    rng = np.random.default_rng(4)
    for trial in range(40):
        n = int(rng.integers(3, 11))
        f = int(rng.integers(0, (n - 1) // 2 + 1))
        d = int(rng.integers(1, 6))
        # Clusters make the minimum-diameter subset non-obvious.
        centers = rng.normal(size=(3, d)) * 3
        X = centers[rng.integers(0, 3, size=n)] + rng.normal(size=(n, d))
        diam, subset = brute_force_mda(X, f)
        info: dict = {}
        out = aggregate("mda", torch.from_numpy(X), f, info=info)
        got = info.get("selected", list(range(n)))
        D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
        got_diam = max((D[i, j] for i, j in itertools.combinations(got, 2)), default=0.0)
        assert got_diam == pytest.approx(diam, rel=1e-9, abs=1e-12), (trial, n, f)
        assert tuple(got) == subset, (trial, n, f)
        assert np.allclose(out.numpy(), X[list(subset)].mean(0), atol=1e-12)


def test_exact_mda_on_a_larger_case_beats_every_other_subset_found_by_sampling():
    rng = np.random.default_rng(5)
    n, f = 25, 12
    X = rng.normal(size=(n, 50))
    info: dict = {}
    aggregate("mda", torch.from_numpy(X), f, info=info)
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    sel = info["selected"]
    best = max(D[i, j] for i, j in itertools.combinations(sel, 2))
    for _ in range(3000):
        subset = rng.choice(n, n - f, replace=False)
        assert max(D[i, j] for i, j in itertools.combinations(subset, 2)) >= best - 1e-9


def test_geometric_median_meets_its_optimality_condition():
    gen = torch.Generator().manual_seed(6)
    X = torch.randn(9, 40, generator=gen, dtype=torch.float64) * torch.linspace(0.1, 3, 40, dtype=torch.float64)
    info: dict = {}
    z = aggregate("geometric-median", X, 4, tolerance=1e-10, info=info)
    assert info["converged"]
    diff = X - z
    units = diff / diff.norm(dim=1, keepdim=True)
    # Sum of unit vectors toward the inputs vanishes at the optimum (z is no input here).
    assert units.sum(0).norm() < 1e-6
    # And no nearby point does better.
    def cost(p: torch.Tensor) -> torch.Tensor:
        return (X - p).norm(dim=1).sum()

    for _ in range(20):
        assert cost(z) <= cost(z + 1e-3 * torch.randn(40, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("name", names())
def test_torch_path_matches_compiled_kernels(name):
    gen = torch.Generator().manual_seed(7)
    n, f = setting(name)
    n += 3  # an n that is no power of two and gives f some slack
    for dtype in (torch.float32, torch.float64):
        X = torch.randn(n, 5000, generator=gen, dtype=dtype)
        ref = aggregate(name, X, f, **params_for(name))
        with force_torch():
            alt = aggregate(name, X, f, **params_for(name))
        tol = 1e-5 if dtype == torch.float32 else 1e-10
        assert alt.dtype == dtype and torch.allclose(alt, ref, atol=tol, rtol=tol), name


@pytest.mark.parametrize("name", names())
def test_float32_and_float64_agree(name):
    gen = torch.Generator().manual_seed(8)
    n, f = setting(name)
    X = torch.randn(n, 3000, generator=gen, dtype=torch.float64)
    out64 = aggregate(name, X, f, **params_for(name))
    out32 = aggregate(name, X.float(), f, **params_for(name))
    assert out32.dtype == torch.float32
    assert torch.allclose(out32.double(), out64, atol=1e-4, rtol=1e-4), name


@pytest.mark.parametrize("backend", ["compiled", "torch"])
@pytest.mark.parametrize("name", names())
def test_non_finite_rows_are_dropped_and_counted_against_f(name, backend):
    gen = torch.Generator().manual_seed(9)
    n, f = setting(name)
    X = torch.randn(n, 257, generator=gen, dtype=torch.float32)
    bad = X.clone()
    bad[1, 17] = float("nan")
    bad[n - 1] = float("inf")
    bad[n - 1, 3] = -float("inf")
    keep = [i for i in range(n) if i not in (1, n - 1)]
    ctx = force_torch() if backend == "torch" else _null()
    with ctx:
        info: dict = {}
        out = aggregate(name, bad, f, info=info, **params_for(name))
        expected = aggregate(name, X[keep], f - 2, **params_for(name))
        assert info["dropped"] == [1, n - 1]
        assert torch.isfinite(out).all(), name
        assert torch.allclose(out, expected, atol=1e-6), name
        worse = bad.clone()
        worse[2, 0] = float("nan")
        with pytest.raises(ValueError, match=rf"{name}: 3 of the {n} vectors hold NaN or infinite values, more than f={f}"):
            aggregate(name, worse, f, **params_for(name))


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_huge_finite_values_are_not_mistaken_for_non_finite():
    X = torch.randn(5, 100)
    X[0] = 3e38  # the float32 row sum overflows; the entries are finite
    info: dict = {}
    aggregate("median", X, 1, info=info)
    assert info["dropped"] == []


def test_mda_beyond_one_bitset_word():
    # n > 63 vertices spans two 63-bit words in the clique search.
    gen = torch.Generator().manual_seed(10)
    n, f = 70, 5
    X = torch.randn(n, 8, generator=gen, dtype=torch.float64)
    far = [3, 17, 40, 63, 69]
    X[far] += 50.0 * torch.randn(len(far), 8, generator=gen, dtype=torch.float64)
    info: dict = {}
    out = aggregate("mda", X, f, info=info)
    keep = [i for i in range(n) if i not in far]
    assert info["selected"] == keep
    assert torch.allclose(out, X[keep].mean(0), atol=1e-12)
