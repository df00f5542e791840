"""Robust aggregation rules (GARs).

`garfield.aggregators.catalog` (the `RuleSpec` of each rule: name, resilience condition, typed
parameters) is free of tensor libraries; this package imports torch only when `aggregate` is
first used, so the operator and `garfield validate` can read the catalog without pulling torch in.

    from garfield.aggregators import aggregate
    agg = aggregate("mda", gradients, f=2)

See `garfield.aggregators.rules` for each rule's exact convention and `api` for the non-finite
policy.
"""

from __future__ import annotations

from typing import Any

from garfield.aggregators.catalog import RULES, Condition, RuleSpec, names, rule_spec

__all__ = ["aggregate", "names", "rule_spec", "Condition", "RuleSpec", "RULES", "force_torch"]


def __getattr__(attr: str) -> Any:
    if attr == "aggregate":
        from garfield.aggregators.api import aggregate

        return aggregate
    if attr == "force_torch":
        from garfield.aggregators._backend import force_torch

        return force_torch
    raise AttributeError(f"module 'garfield.aggregators' has no attribute {attr!r}")
