"""`garfield validate` refuses out-of-range rule and attack parameters before any node starts.

The values come from tests/support/param_cases.py, which aggregate() and the attack constructors
run too; every message must name the field path, the value and the rule or attack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from garfield.aggregators.catalog import RULES
from garfield.params import Param, SizeLimit, check_params, check_sizes
from garfield.spec.validation import InvalidJob, validate_manifest

from support.param_cases import SIZE_CASES, Case, bad_values, good_values, missing_cases, value_id

ROOT = Path(__file__).resolve().parents[2]


def _manifest(case: Case, value: Any, role: str = "") -> tuple[dict[str, Any], str]:
    """examples/mnist-msmw.yaml with `value` in the case's parameter, and the field's path. A rule
    goes on `role` with replicas enough for its condition (f = 2 on workers, 1 on servers)."""
    m = yaml.safe_load((ROOT / "examples" / "mnist-msmw.yaml").read_text())
    spec = m["spec"]
    if case.kind == "rule":
        role = role or "workers"
        f = spec[role]["byzantine"]
        spec[role]["replicas"] = RULES[case.name].condition.min_n(f) + f
        spec[role]["gar"] = {"name": case.name, "params": {case.param: value}}
        return m, f"spec.{role}.gar.params.{case.param}"
    if case.kind == "stage":
        # In front of average (any number of vectors; not robust, so only a warning) on 9 workers.
        role = role or "workers"
        spec[role]["replicas"] = 9
        spec[role]["gar"] = {"name": "average", "preAggregation": [{"name": case.name, "params": {case.param: value}}]}
        return m, f"spec.{role}.gar.preAggregation[0].params.{case.param}"
    target = spec["attack"]["workers" if case.kind == "worker" else "servers"]
    target["name"], target["params"] = case.name, {case.param: value}
    return m, f"spec.attack.{'workers' if case.kind == 'worker' else 'servers'}.params.{case.param}"


def test_every_declared_parameter_has_cases() -> None:
    """A parameter added to a catalog without refused and accepted values here fails."""
    assert missing_cases() == []


# A rule's parameter on either role; an attack's in its own place.
REFUSED = [(c, v, role) for c, v in bad_values()
           for role in (("workers", "servers") if c.kind in ("rule", "stage") else ("",))]


@pytest.mark.parametrize("case,value,role", REFUSED, ids=[f"{c.id}{'@' + r if r else ''}={value_id(v)}" for c, v, r in REFUSED])
def test_out_of_range_value_is_refused_naming_field_value_and_owner(case: Case, value: Any, role: str) -> None:
    manifest, path = _manifest(case, value, role)
    with pytest.raises(InvalidJob) as info:
        validate_manifest(manifest, "bad.yaml")
    expected = f"{path}: {case.name} needs "
    matching = [e for e in info.value.errors if e.startswith(expected)]
    assert matching, info.value.errors
    assert matching[0].endswith(f"got {value!r}"), matching
    assert case.param in matching[0].removeprefix(expected)


@pytest.mark.parametrize("case,value", good_values(), ids=[f"{c.id}={value_id(v)}" for c, v in good_values()])
def test_edge_values_pass(case: Case, value: Any) -> None:
    manifest, _ = _manifest(case, value)
    validate_manifest(manifest)


@pytest.mark.parametrize("rule,param", sorted(SIZE_CASES))
def test_size_bound_is_checked_on_the_replies_aggregated(rule: str, param: str) -> None:
    """multi-krum aggregates q = n - f replies tolerating f: m <= q - f, known from the manifest."""
    case = Case("rule", rule, param, (), ())
    manifest, path = _manifest(case, 0)  # workers: n = 9, f = 2, so q = 7 and q - f = 5
    limit = 5
    manifest["spec"]["workers"]["gar"]["params"][param] = limit
    validate_manifest(manifest)
    manifest["spec"]["workers"]["gar"]["params"][param] = limit + 1
    with pytest.raises(InvalidJob) as info:
        validate_manifest(manifest)
    expected = f"{path}: {rule} needs {param} <= n-f = {limit}, got {limit + 1} (on the 7 replies it aggregates, f=2)"
    assert expected in info.value.errors


def test_unknown_and_bad_parameters_are_all_reported_at_once() -> None:
    case = Case("rule", "centered-clipping", "tau", (), ())
    manifest, _ = _manifest(case, -1)
    manifest["spec"]["workers"]["gar"]["params"].update(iterations=0, taux=1)
    manifest["spec"]["attack"]["workers"]["params"] = {"scale": 0}
    with pytest.raises(InvalidJob) as info:
        validate_manifest(manifest)
    assert set(info.value.errors) == {
        "spec.workers.gar.params.taux: centered-clipping has no parameter 'taux' (parameters: iterations, tau)",
        "spec.workers.gar.params.tau: centered-clipping needs tau > 0, got -1",
        "spec.workers.gar.params.iterations: centered-clipping needs iterations >= 1, got 0",
        "spec.attack.workers.params.scale: signflip needs scale > 0, got 0",
    }


# --- garfield.params on its own ------------------------------------------------------------------

TAU = Param("tau", "number", 10.0, "radius", minimum=0, exclusive_minimum=True)
COUNT = Param("count", "integer", None, "null: derived", minimum=1, maximum=5, exclusive_maximum=True,
              size_limit=SizeLimit("n-f", lambda n, f: n - f))


def test_booleans_are_not_numbers_and_integers_pass_for_numbers() -> None:
    assert TAU.error(True) == "needs tau to be a finite number (tau > 0), got True"
    assert TAU.error(3) is None and TAU.error(2.5) is None
    assert COUNT.error(2.0) == "needs count to be an integer or null (1 <= count < 5), got 2.0"
    assert COUNT.error(False) is not None


def test_bounds_inclusive_and_exclusive() -> None:
    assert TAU.error(0) == "needs tau > 0, got 0"
    assert COUNT.error(1) is None and COUNT.error(4) is None and COUNT.error(None) is None
    assert COUNT.error(5) == "needs 1 <= count < 5, got 5"
    assert COUNT.error(0) == "needs 1 <= count < 5, got 0"


def test_check_params_fills_defaults_and_reports_with_or_without_path() -> None:
    assert check_params("clip", {}, (TAU, COUNT)) == ({"tau": 10.0, "count": None}, [])
    assert check_params("clip", None, (TAU,)) == ({"tau": 10.0}, [])
    values, errors = check_params("clip", {"tau": -1, "x": 1}, (TAU, COUNT))
    assert errors == ["clip has no parameter 'x' (parameters: count, tau)", "clip needs tau > 0, got -1"]
    _, errors = check_params("clip", {"tau": -1}, (TAU,), "spec.gar.params")
    assert errors == ["spec.gar.params.tau: clip needs tau > 0, got -1"]
    errors = check_params("clip", [1], (TAU,), "spec.gar.params")[1]
    assert errors == ["spec.gar.params: clip parameters must be a mapping, got [1]"]


def test_size_limits() -> None:
    assert check_sizes("clip", {"count": 3}, (COUNT,), 5, 2, "n=5, f=2") == []
    assert check_sizes("clip", {"count": None}, (COUNT,), 1, 1, "n=1, f=1") == []
    assert check_sizes("clip", {"count": 4}, (COUNT,), 5, 2, "n=5, f=2") == ["clip needs count <= n-f = 3, got 4 (n=5, f=2)"]


def test_a_default_outside_its_own_bounds_fails_at_declaration() -> None:
    with pytest.raises(AssertionError, match="fails its own bounds"):
        Param("tau", "number", -1.0, "radius", minimum=0)
