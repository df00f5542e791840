"""Resilience conditions of the aggregation rules, kept free of tensor libraries.

The validation module, the CRD schema (its enum of rule names) and the operator all need to know
which rules exist and what n each needs for a given f, without importing torch or TensorFlow.
The rule implementations register under the same names and assert the same conditions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Condition:
    """n >= a*f + b, as stated in the rule's paper."""

    a: int
    b: int
    robust: bool = True

    def min_n(self, f: int) -> int:
        return self.a * f + self.b

    def holds(self, n: int, f: int) -> bool:
        return f >= 0 and n >= self.min_n(f)

    def text(self) -> str:
        if self.a == 0:
            return f"n >= {self.b}"
        coeff = "f" if self.a == 1 else f"{self.a}f"
        return f"n >= {coeff}+{self.b}" if self.b else f"n >= {coeff}"


RULES: dict[str, Condition] = {
    # Not robust: one Byzantine vector moves the mean anywhere. Allowed so that evaluation runs
    # can show what robust rules buy; validation warns about it.
    "average": Condition(0, 1, robust=False),
    "median": Condition(2, 1),
    "trimmed-mean": Condition(2, 1),
    "meamed": Condition(2, 1),
    "phocas": Condition(2, 1),
    "krum": Condition(2, 3),
    "multi-krum": Condition(2, 3),
    "bulyan": Condition(4, 3),
    "mda": Condition(2, 1),
    "geometric-median": Condition(2, 1),
    "centered-clipping": Condition(2, 1),
    "aksel": Condition(2, 1),
    "condense": Condition(2, 1),
}


def condition(name: str) -> Condition:
    try:
        return RULES[name]
    except KeyError:
        raise KeyError(f"unknown aggregation rule {name!r}; known: {', '.join(sorted(RULES))}") from None


# Parameters each rule accepts from a job's `gar.params`, with their defaults (None: derived from
# n and f at aggregation time). The rule implementations take exactly these keyword arguments.
PARAMS: dict[str, dict[str, object]] = {
    "average": {},
    "median": {},
    "trimmed-mean": {},
    "meamed": {},
    "phocas": {},
    "krum": {},
    "multi-krum": {"m": None},
    "bulyan": {},
    "mda": {},
    "geometric-median": {"tolerance": 1e-6, "max_iterations": 1000},
    "centered-clipping": {"tau": 10.0, "iterations": 1},
    "aksel": {"mode": "mid"},
    "condense": {"p": 0.9, "seed": None},
}
