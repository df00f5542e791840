"""Each rule against small cases computed by hand, and the checks around the rules."""

from __future__ import annotations

import pytest
import torch

from garfield.aggregators import aggregate, force_torch

BACKENDS = ["compiled", "torch"]


def run(name, X, f, backend="compiled", **params):
    X = torch.as_tensor(X, dtype=torch.float64)
    if backend == "torch":
        with force_torch():
            return aggregate(name, X, f, **params)
    return aggregate(name, X, f, **params)


def close(a, b, tol=1e-9):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=tol, rtol=0)


COLUMN = [[0.0], [1.0], [5.0], [6.0], [7.0]]
PLANE = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0], [0.0, 2.0]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "name, X, f, params, expected",
    [
        ("average", COLUMN, 0, {}, [3.8]),
        ("median", COLUMN, 2, {}, [5.0]),
        ("median", COLUMN[:4], 1, {}, [3.0]),  # even n: mean of the two middle values (1 and 5)
        ("trimmed-mean", COLUMN, 1, {}, [4.0]),  # drop 0 and 7: mean(1, 5, 6)
        ("trimmed-mean", COLUMN, 2, {}, [5.0]),
        ("meamed", COLUMN, 1, {}, [4.75]),  # median 5; 4 closest: 5, 6, 7, 1
        ("meamed", COLUMN, 2, {}, [6.0]),  # 3 closest to 5: 5, 6, 7
        ("phocas", COLUMN, 1, {}, [4.75]),  # trimmed mean 4; 4 closest: 5, 6, then 1 and 7 (tie)
        ("phocas", COLUMN, 2, {}, [6.0]),  # trimmed mean 5 -> 5, 6, 7
        # Krum scores with 2 neighbours: p0=2, p1=3, p2=2, p3=345, p4=5; tie p0/p2 -> p0.
        ("krum", PLANE, 1, {}, [0.0, 0.0]),
        ("multi-krum", PLANE, 1, {}, [0.25, 0.75]),  # m = n-f = 4: p0, p2, p1, p4
        ("multi-krum", PLANE, 1, {"m": 2}, [0.0, 0.5]),
        ("mda", PLANE, 1, {}, [0.25, 0.75]),  # {0,1,2,4}: diameter^2 5 vs >= 164 with p3
        ("mda", PLANE, 2, {}, [1 / 3, 1 / 3]),  # {0,1,2}: diameter^2 2
        ("aksel", [[0.0], [1.0], [2.0], [3.0], [100.0]], 1, {}, [2.0]),  # 3 closest to median 2
        ("aksel", [[0.0], [1.0], [2.0], [3.0], [100.0]], 1, {"mode": "n-f"}, [1.5]),
        ("centered-clipping", [[3.0, 0.0], [0.0, 0.5]], 0, {"tau": 1.0}, [0.5, 0.25]),
        ("condense", COLUMN, 2, {"p": 1.0}, [5.0]),
    ],
)
def test_hand_computed(backend, name, X, f, params, expected):
    assert close(run(name, X, f, backend, **params), expected), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_bulyan_hand_computed(backend):
    # Iterated Krum (f=1) on 0..5 and 100. Step 1: 2 and 3 tie (score 10), 3 is closer to the
    # rest in total; then 2 (9); then 1 and 4 tie (10), 4 wins on total distance; then 0 and 1
    # tie (1), 1 wins; then all scores are 0 and 5 has the smallest total distance. Selected:
    # 1..5; per coordinate the beta = 3 values closest to their median 3: 2, 3, 4 -> 3.
    X = [[0.0], [1.0], [2.0], [3.0], [4.0], [5.0], [100.0]]
    info: dict = {}
    aggregate("bulyan", torch.tensor(X, dtype=torch.float64), 1, info=info)
    assert info["selected"] == [1, 2, 3, 4, 5]
    assert close(run("bulyan", X, 1, backend), [3.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_geometric_median_hand_computed(backend):
    square = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.0, 0.0]]
    assert close(run("geometric-median", square, 2, backend), [0.0, 0.0], 1e-7)
    # Collinear 0, 1, 10: the median point 1 (the iterate converges onto an input).
    assert close(run("geometric-median", [[0.0], [1.0], [10.0]], 1, backend, tolerance=1e-12), [1.0], 1e-6)


def test_centered_clipping_iterations_converge_inside_the_cluster():
    X = torch.tensor([[1.0, 1.0], [1.2, 0.8], [0.8, 1.2], [1.0, 0.9], [50.0, -50.0]], dtype=torch.float64)
    once = aggregate("centered-clipping", X, 1, tau=0.5, iterations=1)
    many = aggregate("centered-clipping", X, 1, tau=0.5, iterations=50)
    assert (many - torch.tensor([1.0, 1.0], dtype=torch.float64)).norm() < 0.2
    target = torch.tensor([1.0, 1.0], dtype=torch.float64)
    assert (many - target).norm() < (once - target).norm()


def test_condense_mixes_median_and_first_vector():
    X = torch.randn(5, 4000, dtype=torch.float64)
    med = aggregate("median", X, 2)
    out = aggregate("condense", X, 2, p=0.7, seed=3)
    from_median = out == med
    from_first = out == X[0]
    assert bool((from_median | from_first).all())
    assert 0.6 < from_median.double().mean().item() < 0.8
    assert torch.equal(out, aggregate("condense", X, 2, p=0.7, seed=3))


def test_resilience_condition_violation_names_rule_n_and_f():
    X = torch.zeros(6, 3)
    with pytest.raises(ValueError, match=r"krum needs n >= 2f\+3: got n=6, f=2"):
        aggregate("krum", X, 2)
    with pytest.raises(ValueError, match=r"bulyan needs n >= 4f\+3: got n=6, f=1"):
        aggregate("bulyan", X, 1)
    with pytest.raises(ValueError, match="f must be a non-negative integer"):
        aggregate("median", X, -1)


def test_bad_names_and_parameters_are_clear_errors():
    X = torch.zeros(5, 3)
    with pytest.raises(ValueError, match="unknown aggregation rule 'krumm'"):
        aggregate("krumm", X, 1)
    with pytest.raises(ValueError, match=r"median has no parameter 'm' \(parameters: none\)"):
        aggregate("median", X, 1, m=3)
    with pytest.raises(ValueError, match=r"multi-krum needs m <= n-f = 4, got 5 \(n=5, f=1\)"):
        aggregate("multi-krum", X, 1, m=5)
    with pytest.raises(ValueError, match="centered-clipping needs tau > 0, got -1"):
        aggregate("centered-clipping", X, 1, tau=-1)
    with pytest.raises(ValueError, match="aksel needs mode to be one of 'mid', 'n-f'"):
        aggregate("aksel", X, 1, mode="x")
    with pytest.raises(ValueError, match="2-D"):
        aggregate("median", torch.zeros(3), 0)
    with pytest.raises(ValueError, match="empty list"):
        aggregate("median", [], 0)


def test_f_zero_is_allowed_everywhere():
    X = torch.randn(5, 7, dtype=torch.float64)
    for name in ("median", "trimmed-mean", "meamed", "phocas", "krum", "multi-krum", "bulyan", "mda", "geometric-median",
                 "aksel"):
        out = aggregate(name, X, 0)
        assert torch.isfinite(out).all(), name
    assert close(aggregate("trimmed-mean", X, 0), X.mean(0))
    assert close(aggregate("mda", X, 0), X.mean(0))
    assert close(aggregate("multi-krum", X, 0), X.mean(0))
    assert close(aggregate("bulyan", X, 0), X.mean(0))


def test_input_forms_and_output_buffer():
    X = torch.randn(5, 9)
    ref = aggregate("median", X, 1)
    assert ref.dtype == torch.float32 and ref.shape == (9,)
    assert torch.equal(aggregate("median", list(X), 1), ref)
    assert torch.equal(torch.from_numpy(aggregate("median", X.numpy(), 1)), ref)
    buf = torch.empty(9)
    res = aggregate("median", X, 1, out=buf)
    assert res.data_ptr() == buf.data_ptr() and torch.equal(res, ref)
    with pytest.raises(ValueError, match="out must be"):
        aggregate("median", X, 1, out=torch.empty(9, dtype=torch.float64))
    # A non-contiguous view (every other coordinate) is read in place, same result as a copy.
    W = torch.randn(5, 18)[:, ::2]
    assert torch.equal(aggregate("median", W, 1), aggregate("median", W.contiguous(), 1))
