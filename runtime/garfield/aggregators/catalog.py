"""The aggregation rules' registry, kept free of tensor libraries: one `RuleSpec` per rule.

The validation module, the CRD schema (its enum of rule names), the operator, the docs generator
and `aggregate()` all read a rule's name, resilience condition and typed parameters here, without
importing torch or TensorFlow. The implementations (`garfield.aggregators.rules`) register under
the same names and must take exactly these parameters; an import-time check enforces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from garfield.params import Param, SizeLimit, check_params, check_sizes, positive, seed


@dataclass(frozen=True)
class Condition:
    """n >= a*f + b, as stated in the rule's paper."""

    a: int
    b: int

    def min_n(self, f: int) -> int:
        return self.a * f + self.b

    def holds(self, n: int, f: int) -> bool:
        return f >= 0 and n >= self.min_n(f)

    def text(self) -> str:
        if self.a == 0:
            return f"n >= {self.b}"
        coeff = "f" if self.a == 1 else f"{self.a}f"
        return f"n >= {coeff}+{self.b}" if self.b else f"n >= {coeff}"


@dataclass(frozen=True)
class RuleSpec:
    """A rule as jobs and callers see it. `robust` False: one Byzantine vector moves the result
    anywhere (allowed for comparison runs; validation warns)."""

    name: str
    condition: Condition
    summary: str
    params: tuple[Param, ...] = ()
    robust: bool = True
    # A bound on the work (n, f) make, beyond the resilience condition: the message when too large.
    size_check: Callable[[int, int], str | None] | None = None

    def check(self, given: Mapping[str, Any] | None, path: str = "") -> tuple[dict[str, Any], list[str]]:
        """`check_params` against this rule's parameters (see `garfield.params`)."""
        return check_params(self.name, given, self.params, path)

    def check_sizes(self, values: Mapping[str, Any], n: int, f: int, context: str, path: str = "") -> list[str]:
        """The bounds that need n and f (multi-krum's m <= n-f, smea's subset count), on checked `values`."""
        errors = check_sizes(self.name, values, self.params, n, f, context, path)
        problem = self.size_check(n, f) if self.size_check is not None else None
        if problem:
            where = path.removesuffix(".params")  # about the rule on these sizes, not a parameter
            errors.append(f"{where + ': ' if where else ''}{self.name} {problem} ({context})")
        return errors


# SMEA's exact search looks at every subset of n-f of the n inputs.
MAX_SUBSETS = 50_000


def _subset_count(n: int, f: int) -> str | None:
    count = math.comb(n, f)
    if count > MAX_SUBSETS:
        return f"searches all C(n, f) = {count:,} subsets, more than {MAX_SUBSETS:,}: use fewer replies or a smaller f"
    return None


_TWO_F_PLUS_ONE = Condition(2, 1)

_SPECS: tuple[RuleSpec, ...] = (
    RuleSpec("average", Condition(0, 1), "the mean", robust=False),
    RuleSpec("median", _TWO_F_PLUS_ONE, "coordinate-wise median; even n: mean of the two middle values"),
    RuleSpec("trimmed-mean", _TWO_F_PLUS_ONE, "per coordinate, the mean after dropping the f largest and f smallest values"),
    RuleSpec("meamed", _TWO_F_PLUS_ONE, "per coordinate, the mean of the n-f values closest to the median"),
    RuleSpec("phocas", _TWO_F_PLUS_ONE, "per coordinate, the mean of the n-f values closest to the f-trimmed mean"),
    RuleSpec("krum", Condition(2, 3), "the input with the smallest sum of squared distances to its n-f-2 nearest others"),
    RuleSpec(
        "multi-krum", Condition(2, 3), "the mean of the m inputs with the smallest Krum scores",
        (Param("m", "integer", None, "inputs averaged; null: n-f", minimum=1,
               size_limit=SizeLimit("n-f", lambda n, f: n - f)),),
    ),
    RuleSpec("bulyan", Condition(4, 3), "n-2f inputs by iterated Krum, then per coordinate a trimmed mean around their median"),
    RuleSpec("mda", _TWO_F_PLUS_ONE, "the mean of the n-f inputs of minimum diameter"),
    RuleSpec(
        "geometric-median", _TWO_F_PLUS_ONE, "argmin_z sum_i |x_i - z| by smoothed Weiszfeld",
        (positive("tolerance", 1e-6, "stop once a step is at most tolerance x the mean distance to the iterate"),
         Param("max_iterations", "integer", 1000, "Weiszfeld steps at most", minimum=1)),
    ),
    RuleSpec(
        "centered-clipping", _TWO_F_PLUS_ONE, "iterated clipping of the inputs around the running aggregate",
        (positive("tau", 10.0, "clipping radius around the current aggregate"),
         Param("iterations", "integer", 1, "clipping steps from v = 0", minimum=1)),
    ),
    RuleSpec(
        "aksel", _TWO_F_PLUS_ONE, "the mean of the inputs closest to the coordinate-wise median",
        (Param("mode", "choice", "mid", "how many inputs are averaged: ceil(n/2) for mid, n-f for n-f",
               choices=("mid", "n-f")),),
    ),
    RuleSpec("monna", _TWO_F_PLUS_ONE, "the mean of the n-f inputs nearest the first (the node's own vector)"),
    RuleSpec("smea", _TWO_F_PLUS_ONE, "the mean of the n-f inputs whose covariance has the smallest largest eigenvalue "
                                      "(an exact search: at most 50,000 subsets C(q, f))",
             size_check=_subset_count),
    RuleSpec("caf", _TWO_F_PLUS_ONE, "covariance-bound agnostic filter: weights shrunk along the top eigenvector "
                                     "until n-2f remain, the weighted mean of least spread"),
    RuleSpec(
        "condense", _TWO_F_PLUS_ONE, "per coordinate, the median with probability p, else the node's own value",
        # p = 0 would ignore every other input: the rule refuses it.
        (Param("p", "number", 0.9, "probability of taking the median per coordinate", minimum=0,
               exclusive_minimum=True, maximum=1),
         seed("per-coordinate draw")),
    ),
)

RULES: dict[str, RuleSpec] = {spec.name: spec for spec in _SPECS}
assert len(RULES) == len(_SPECS), "two rules share a name"


def rule_spec(name: str) -> RuleSpec:
    """The RuleSpec of `name`; ValueError naming the known rules otherwise."""
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown aggregation rule {name!r}; known: {', '.join(sorted(RULES))}") from None


def names() -> list[str]:
    """The rule names, sorted."""
    return sorted(RULES)
