"""Fuzzing the manifest validator: a valid job with any field replaced by any JSON-like value, or
with fields added where none belong. Whatever the input, `validate_manifest` returns a job or
raises InvalidJob with messages; never another exception, never a hang.

Derandomized (the same inputs on every run, so CI never changes its verdict on its own) with a
bounded budget. Inputs that once found a bug stay as `@example`s.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from garfield.spec.validation import InvalidJob, validate_manifest

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "mnist-msmw.yaml").read_text())


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in `value` a fuzzer may overwrite: each mapping key and list index, recursively."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += paths(item, (*prefix, i))
    return out


PATHS = paths(BASE)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["", "0", "-1", "1e400", "median", "krum", "nan", "pytorch", "tensorflow", "GARFIELD_ROLE"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def put(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


def check(manifest: Any) -> None:
    try:
        job = validate_manifest(manifest)
    except InvalidJob as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors), exc.errors
        return
    assert job.name and job.spec is not None


@settings(derandomize=True, max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=3))
def test_any_field_replaced_by_anything_gets_a_verdict(changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    manifest = copy.deepcopy(BASE)
    for path, value in changes:
        try:
            put(manifest, path, value)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier change replaced this path's parent
    check(manifest)


@settings(derandomize=True, max_examples=200, deadline=None, database=None)
@given(st.sampled_from([p for p in PATHS if isinstance(p[-1], str)] + [()]), st.text(max_size=12), values)
def test_fields_added_anywhere_get_a_verdict(parent: tuple[Any, ...], key: str, value: Any) -> None:
    manifest = copy.deepcopy(BASE)
    target: Any = manifest
    for step in parent:
        target = target[step]
    if isinstance(target, dict):
        target[key] = value
    check(manifest)


@settings(derandomize=True, max_examples=100, deadline=None, database=None)
@given(values)
@example({"apiVersion": "garfield.dev/v1alpha1", "kind": "ByzantineTrainingJob", "metadata": {"name": "x"}, "spec": []})
def test_any_document_gets_a_verdict(document: Any) -> None:
    check(document)
