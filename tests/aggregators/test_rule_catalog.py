"""The rule catalog and the implementations agree, and aggregate() refuses exactly the parameter
values `garfield validate` refuses (the table in tests/support/param_cases.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from garfield.aggregators import aggregate
from garfield.aggregators.catalog import RULES
from garfield.aggregators.rules import IMPLEMENTATIONS, Rule, conformance_errors

from support.param_cases import SIZE_CASES, Case, bad_values, good_values, value_id

N, F = 7, 2  # every rule's condition holds (bulyan's is not tested with parameters)
X = torch.randn(N, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

BAD = [(c, v) for c, v in bad_values() if c.kind == "rule"]
GOOD = [(c, v) for c, v in good_values() if c.kind == "rule"]


def test_every_rule_is_implemented_with_exactly_its_parameters() -> None:
    assert conformance_errors(RULES, IMPLEMENTATIONS) == []


def test_conformance_reports_a_missing_rule_other_parameters_and_defaults() -> None:
    def tau_only(b: Any, tau: float = 1.0) -> Any:
        return b

    implementations = {**IMPLEMENTATIONS, "centered-clipping": Rule("centered-clipping", tau_only)}
    del implementations["median"]
    implementations["extra"] = Rule("extra", tau_only)
    assert conformance_errors(RULES, implementations) == [
        "median: in the catalog, not implemented",
        "extra: implemented, not in the catalog",
        "centered-clipping: the function takes ['tau'], the catalog declares ['tau', 'iterations']",
        "centered-clipping: tau has a default in the function",
    ]


@pytest.mark.parametrize("case,value", BAD, ids=[f"{c.id}={value_id(v)}" for c, v in BAD])
def test_aggregate_refuses_what_validation_refuses(case: Case, value: Any) -> None:
    with pytest.raises(ValueError) as info:
        aggregate(case.name, X, F, **{case.param: value})
    assert str(info.value).startswith(f"{case.name} needs ") and str(info.value).endswith(f"got {value!r}")


@pytest.mark.parametrize("case,value", GOOD, ids=[f"{c.id}={value_id(v)}" for c, v in GOOD])
def test_aggregate_accepts_the_edge_values(case: Case, value: Any) -> None:
    out = aggregate(case.name, X, F, **{case.param: value})
    assert out.shape == (6,) and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("rule,param", sorted(SIZE_CASES))
def test_size_bound_is_checked_at_aggregation(rule: str, param: str) -> None:
    for n, f, largest in SIZE_CASES[(rule, param)]:
        rows = X[:n]
        aggregate(rule, rows, f, **{param: largest})
        with pytest.raises(ValueError, match=rf"{rule} needs {param} <= n-f = {largest}, got {largest + 1} \(n={n}, f={f}\)"):
            aggregate(rule, rows, f, **{param: largest + 1})


def test_size_bound_holds_after_non_finite_rows_are_dropped() -> None:
    """Dropping k non-finite rows leaves n-f unchanged, so m = n-f still works."""
    rows = X.clone()
    rows[0, 0] = float("nan")
    info: dict[str, Any] = {}
    out = aggregate("multi-krum", rows, F, m=N - F, info=info)
    assert info["dropped"] == [0] and len(info["selected"]) == N - F and bool(torch.isfinite(out).all())


def test_numpy_scalars_pass_as_numbers_and_integers() -> None:
    np = pytest.importorskip("numpy")
    aggregate("centered-clipping", X, F, tau=np.float32(2.5), iterations=np.int64(2))
    aggregate("condense", X, F, p=np.float64(0.5), seed=np.int64(3))
