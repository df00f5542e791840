"""Robust aggregation rules (GARs).

`garfield.aggregators.conditions` (rule names, resilience conditions, parameters) is free of
tensor libraries; this package imports torch only when `aggregate` is first used, so the operator
and `garfield validate` can import the conditions without pulling torch in.

    from garfield.aggregators import aggregate
    agg = aggregate("mda", gradients, f=2)

See `garfield.aggregators.rules` for each rule's exact convention and `api` for the non-finite
policy.
"""

from __future__ import annotations

from typing import Any

from garfield.aggregators.conditions import PARAMS, RULES, Condition, condition

__all__ = ["aggregate", "names", "condition", "Condition", "RULES", "PARAMS", "force_torch"]


def names() -> list[str]:
    """The rule names, sorted."""
    return sorted(RULES)


def __getattr__(attr: str) -> Any:
    if attr == "aggregate":
        from garfield.aggregators.api import aggregate

        return aggregate
    if attr == "force_torch":
        from garfield.aggregators._backend import force_torch

        return force_torch
    raise AttributeError(f"module 'garfield.aggregators' has no attribute {attr!r}")
