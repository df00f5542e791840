"""Pre-aggregation stages (NNM, bucketing, static clipping, ARC) against their definitions.

Hand-computed cases pin each stage exactly; seeded draws (colluders' duplicated rows, huge
magnitudes, zeros) compare the tensor code with a brute-force float64 reading of the definition
written here in plain numpy; the conditions and shapes are checked where validation reads them
(`check_chain`, `garfield validate`) and where nodes meet them (`aggregate`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from garfield.aggregators import aggregate
from garfield.aggregators._preaggregate import IMPLEMENTATIONS, arc, bucketing, clipping, conformance_errors, nnm
from garfield.aggregators.preaggregation import STAGES, Stage, check_chain, describe

from support.param_cases import Case, bad_values, good_values, value_id

CASES = 40


# -- the definitions, by brute force ----------------------------------------------------------------


def nnm_definition(X: np.ndarray, f: int) -> np.ndarray:
    n = len(X)
    out = np.empty_like(X)
    for i in range(n):
        distances = [(0 if j == i else 1, math.dist(X[i], X[j]), j) for j in range(n)]  # itself first, then lower rows
        nearest = [j for _, _, j in sorted(distances, key=lambda t: (t[1], t[0], t[2]))][: n - f]
        out[i] = X[nearest].mean(axis=0)
    return out


def clip_definition(X: np.ndarray, threshold: float) -> np.ndarray:
    norms = [math.sqrt(sum(v * v for v in row)) for row in X.tolist()]
    return np.array([row * min(1.0, threshold / r) if r > 0 else row for row, r in zip(X, norms, strict=True)])


def arc_definition(X: np.ndarray, f: int) -> np.ndarray:
    n = len(X)
    k = math.floor(2 * (f / n) * (n - f) + 1e-12)
    norms = sorted((math.sqrt(sum(v * v for v in row)) for row in X.tolist()), reverse=True)
    return clip_definition(X, norms[k])


def draw(rng: np.random.Generator, n: int, f: int, d: int = 6) -> np.ndarray:
    """n - f correct rows (some repeated) and f Byzantine ones of one kind."""
    correct = rng.normal(size=(n - f, d))
    if n - f > 2 and rng.random() < 0.5:
        correct[1] = correct[0]  # a repeated correct row: ties in distance
    kind = rng.choice(["copies", "huge", "zeros", "near", "alie"])
    if kind == "copies":
        byzantine = np.repeat(correct[:1], f, axis=0)
    elif kind == "huge":
        byzantine = np.full((f, d), 1e12)
    elif kind == "zeros":
        byzantine = np.zeros((f, d))
    elif kind == "near":
        byzantine = correct[:f] + 1e-3
    else:  # A Little Is Enough: mean - z * std, identical for every attacker
        byzantine = np.repeat((correct.mean(0) - 1.5 * correct.std(0))[None], f, axis=0)
    return np.concatenate([correct, byzantine])


# -- exact, by hand ---------------------------------------------------------------------------------


def test_nnm_by_hand() -> None:
    X = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    # n=4, f=1: each row becomes the mean of its 3 nearest (itself included).
    assert nnm(X, 1).flatten().tolist() == pytest.approx([1.0, 1.0, 1.0, 13.0 / 3.0])
    # f=0: every row's n nearest are all rows: each becomes the mean.
    assert nnm(X, 0).flatten().tolist() == pytest.approx([3.25] * 4)


def test_nnm_ties_go_to_itself_then_the_lower_row() -> None:
    # Row 1 is a copy of row 0 and row 2 is at distance 1 from both: with n - f = 2, row 0 takes
    # {0, 1}, row 1 takes {1, 0} (itself first), row 2 takes itself and the lower of its two
    # equally near rows, row 0.
    X = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    out = nnm(X, 2)
    assert out[0].tolist() == [0.0, 0.0] and out[1].tolist() == [0.0, 0.0]
    assert out[2].tolist() == [0.5, 0.0]


def test_clipping_by_hand() -> None:
    X = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    assert clipping(X, 0, 1.0).flatten().tolist() == pytest.approx([0.6, 0.8, 0.3, 0.4, 0.0, 0.0])


def test_arc_clips_the_largest_to_the_k_plus_first_norm() -> None:
    X = torch.tensor([[1.0], [2.0], [3.0], [4.0], [-10.0]])
    # n=5, f=1: k = floor(2 * 1/5 * 4) = 1, so every row is clipped to the 2nd largest norm, 4.
    assert arc(X, 1).flatten().tolist() == [1.0, 2.0, 3.0, 4.0, -4.0]
    # n=5, f=2: k = floor(2 * 2/5 * 3) = 2: clipped to the 3rd largest norm, 3.
    assert arc(X, 2).flatten().tolist() == [1.0, 2.0, 3.0, 3.0, -3.0]
    # f=0: k = 0, nothing is clipped.
    assert arc(X, 0).flatten().tolist() == [1.0, 2.0, 3.0, 4.0, -10.0]


def test_bucketing_averages_buckets_of_a_seeded_shuffle() -> None:
    X = torch.arange(5, dtype=torch.float64).reshape(5, 1)
    order = np.random.default_rng(7).permutation(5)
    expected = [float(np.mean(order[i:i + 2])) for i in range(0, 5, 2)]  # the last bucket holds one row
    assert bucketing(X, 1, 2, 7).flatten().tolist() == expected
    assert bucketing(X, 1, 1, 7).shape == (5, 1) and bucketing(X, 1, 5, None).flatten().tolist() == [2.0]


def test_bucketing_draws_a_fresh_shuffle_without_a_seed() -> None:
    X = torch.arange(8, dtype=torch.float64).reshape(8, 1)
    outputs = {tuple(bucketing(X, 1, 2, None).flatten().tolist()) for _ in range(6)}
    assert len(outputs) > 1  # 8!/(2^4) orders give distinct buckets: six equal draws are ~1e-15 likely


# -- against the definitions, seeded draws ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_stages_match_their_definitions(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(2026)
    tolerance = 1e-9 if dtype == torch.float64 else 1e-4
    for _ in range(CASES):
        n = int(rng.integers(3, 12))
        f = int(rng.integers(0, (n - 1) // 2 + 1))
        X = draw(rng, n, f)
        T = torch.from_numpy(X).to(dtype)
        Xd = T.double().numpy()  # the same numbers, as the stage sees them
        scale = max(1.0, float(np.abs(Xd).max()))
        # NNM: near-ties may round either way in float32, so compare with the definition only in float64.
        if dtype == torch.float64:
            assert np.allclose(nnm(T, f).numpy(), nnm_definition(Xd, f), rtol=0, atol=tolerance * scale)
        threshold = float(rng.uniform(0.5, 3.0))
        assert np.allclose(clipping(T, f, threshold).double().numpy(), clip_definition(Xd, threshold),
                           rtol=tolerance, atol=tolerance)
        assert np.allclose(arc(T, f).double().numpy(), arc_definition(Xd, f), rtol=tolerance, atol=tolerance * scale)


def test_arc_bounds_every_norm_by_a_correct_ones() -> None:
    """What makes ARC safe: k + 1 >= f + 1, so the threshold is at most the largest correct norm."""
    rng = np.random.default_rng(5)
    for _ in range(CASES):
        n = int(rng.integers(3, 15))
        f = int(rng.integers(0, (n - 1) // 2 + 1))
        X = draw(rng, n, f)
        largest_correct = float(np.linalg.norm(X[: n - f], axis=1).max())
        norms = torch.linalg.vector_norm(arc(torch.from_numpy(X), f), dim=1)
        assert float(norms.max()) <= largest_correct * (1 + 1e-12)


# -- in front of a rule ----------------------------------------------------------------------------


def test_aggregate_runs_the_chain_then_the_rule() -> None:
    rng = np.random.default_rng(3)
    X = torch.from_numpy(draw(rng, 9, 2))
    by_hand = aggregate("median", arc(nnm(X, 2), 2), 2)
    assert torch.equal(aggregate("median", X, 2, pre=[{"name": "nnm"}, {"name": "arc"}]), by_hand)
    assert torch.equal(aggregate("median", X, 2, pre=[Stage("nnm", {}), Stage("arc", {})]), by_hand)
    bucketed = bucketing(X, 2, 2, 11)
    assert torch.equal(aggregate("median", X, 2, pre=[{"name": "bucketing", "params": {"seed": 11}}]),
                       aggregate("median", bucketed, 2))


def test_nnm_lets_median_survive_a_little_is_enough() -> None:
    """The point of the stage: ALIE's identical vectors sit inside the correct spread, so plain
    coordinate-wise median moves toward them; after NNM each correct row is already a mean of
    mostly correct rows and the median lands nearer the correct mean."""
    rng = np.random.default_rng(11)
    n, f, d = 11, 4, 200
    correct = rng.normal(loc=1.0, size=(n - f, d))
    alie = np.repeat((correct.mean(0) - 1.0 * correct.std(0))[None], f, axis=0)
    X = torch.from_numpy(np.concatenate([correct, alie]))
    truth = torch.from_numpy(correct.mean(0))
    plain = float(torch.linalg.vector_norm(aggregate("median", X, f) - truth))
    mixed = float(torch.linalg.vector_norm(aggregate("median", X, f, pre=[{"name": "nnm"}]) - truth))
    assert mixed < plain


def test_non_finite_rows_are_removed_before_the_stages_and_count_against_f() -> None:
    X = torch.tensor([[0.0], [1.0], [2.0], [3.0], [float("nan")]])
    info: dict[str, Any] = {}
    result = aggregate("median", X, 2, pre=[{"name": "nnm"}], info=info)
    # One NaN row out of f=2: NNM then runs on the 4 others with f=1.
    assert info["pre_dropped"] == [4]
    assert float(result) == pytest.approx(float(aggregate("median", nnm(X[:4], 1), 1)))
    with pytest.raises(ValueError, match="more than f=0"):
        aggregate("median", X, 0, pre=[{"name": "clipping"}])


def test_aggregate_refuses_a_chain_that_breaks_a_condition() -> None:
    X = torch.zeros(5, 3)
    with pytest.raises(ValueError, match=r"krum needs n >= 2f\+3.*pre-aggregation"):
        aggregate("krum", X, 1, pre=[{"name": "bucketing"}])  # ceil(5/2) = 3 < 2*1+3
    with pytest.raises(ValueError, match="nnm needs n >= 2f\\+1"):
        aggregate("median", X, 3, pre=[{"name": "nnm"}])
    with pytest.raises(ValueError, match="threshold"):
        aggregate("median", X, 1, pre=[{"name": "clipping", "params": {"threshold": -1}}])
    with pytest.raises(ValueError, match="unknown pre-aggregation stage 'bucket'"):
        aggregate("median", X, 1, pre=[{"name": "bucket"}])


# -- conditions, shapes and the catalog ------------------------------------------------------------


@pytest.mark.parametrize(("chain", "n", "f", "expected"), [
    ([{"name": "nnm"}], 7, 3, (7, 3)),
    ([{"name": "bucketing", "params": {"s": 2}}], 7, 1, (4, 1)),
    ([{"name": "bucketing", "params": {"s": 3}}, {"name": "arc"}], 9, 1, (3, 1)),
    ([{"name": "clipping", "params": {"threshold": 0.1}}, {"name": "nnm"}], 5, 2, (5, 2)),
])
def test_check_chain_hands_on_n_and_f(chain: list[dict[str, Any]], n: int, f: int, expected: tuple[int, int]) -> None:
    checked = check_chain(chain, n, f)
    assert not checked.errors and (checked.n, checked.f) == expected


@pytest.mark.parametrize(("chain", "n", "f", "message"), [
    ([{"name": "nnm"}], 6, 3, "[0]: nnm needs n >= 2f+1 on the 6 vectors it gets (f=3)"),
    ([{"name": "bucketing", "params": {"s": 5}}, {"name": "arc"}], 9, 1, "[1]: arc needs n >= 2f+1 on the 2 vectors"),
    ([{"name": "bucketing", "params": {"s": 0}}], 9, 1, "[0].params.s: bucketing needs s >= 1, got 0"),
    ([{"name": "clipping", "params": {"threshold": "big"}}], 9, 1, "[0].params.threshold: clipping"),
    ([{"name": "arc", "params": {"k": 2}}], 9, 1, "[0].params.k: arc has no parameter 'k'"),
    ([{"name": "mixing"}], 9, 1, "[0].name: unknown pre-aggregation stage 'mixing'"),
    (["nnm"], 9, 1, "[0]: a stage is a mapping"),
])
def test_check_chain_names_what_is_wrong(chain: list[Any], n: int, f: int, message: str) -> None:
    errors = check_chain(chain, n, f, "spec.workers.gar.preAggregation").errors
    assert len(errors) == 1 and errors[0].startswith("spec.workers.gar.preAggregation" + message.split(":")[0]), errors
    assert message.split(": ", 1)[1] in errors[0], errors


def test_catalog_and_implementations_agree() -> None:
    assert conformance_errors(STAGES, IMPLEMENTATIONS) == []

    def wrong(X: torch.Tensor, f: int, radius: float = 1.0) -> torch.Tensor:
        return X

    errors = conformance_errors(STAGES, {**IMPLEMENTATIONS, "clipping": wrong})
    assert any("clipping: the function takes ['radius']" in e for e in errors)
    assert any("radius has a default" in e for e in errors)


def test_describe_names_a_chain() -> None:
    assert describe([Stage("nnm", {}), Stage("bucketing", {"s": 2, "seed": None})]) == "nnm -> bucketing(s=2)"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_keeps_dtype_and_device(stage: str) -> None:
    X = torch.randn(7, 5, dtype=torch.float32)
    checked = check_chain([{"name": stage}], 7, 2)
    out = IMPLEMENTATIONS[stage](X, 2, **checked.stages[0].params)
    assert out.dtype == X.dtype and out.device == X.device and out.shape == (checked.n, 5)


STAGE_BAD = [(c, v) for c, v in bad_values() if c.kind == "stage"]
STAGE_GOOD = [(c, v) for c, v in good_values() if c.kind == "stage"]


@pytest.mark.parametrize("case,value", STAGE_BAD, ids=[f"{c.id}={value_id(v)}" for c, v in STAGE_BAD])
def test_aggregate_refuses_the_stage_values_validation_refuses(case: Case, value: Any) -> None:
    with pytest.raises(ValueError) as info:
        aggregate("average", torch.randn(9, 4), 2, pre=[{"name": case.name, "params": {case.param: value}}])
    text = str(info.value)
    assert text.startswith(f"average's pre-aggregation: {case.name} needs ") and text.endswith(f"got {value!r}"), text


@pytest.mark.parametrize("case,value", STAGE_GOOD, ids=[f"{c.id}={value_id(v)}" for c, v in STAGE_GOOD])
def test_aggregate_accepts_the_stage_edge_values(case: Case, value: Any) -> None:
    out = aggregate("average", torch.randn(9, 4), 2, pre=[{"name": case.name, "params": {case.param: value}}])
    assert out.shape == (4,) and bool(torch.isfinite(out).all())
