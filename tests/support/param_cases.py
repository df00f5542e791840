"""One table of parameter values, refused and accepted, for every rule and attack parameter.

`garfield validate` (tests/spec), `aggregate()` (tests/aggregators) and the attack constructors
(tests/attacks) all run this table, so the three must agree value for value. The table is
explicit (each bound's edges are chosen by hand), and `missing_cases()` compares it with the
registries, so a parameter added to a catalog without cases here fails the suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from garfield.aggregators.catalog import RULES
from garfield.aggregators.preaggregation import STAGES
from garfield.attacks.catalog import BY_SIDE
from garfield.params import SEED_MAX, SEED_MIN, Param

NAN, INF = float("nan"), float("inf")


@dataclass(frozen=True)
class Case:
    """`kind`: "rule", "stage" (pre-aggregation), "worker" or "server"; `bad`: refused values (out of range, wrong type);
    `good`: accepted values, the edges of the range among them."""

    kind: str
    name: str
    param: str
    bad: tuple[Any, ...]
    good: tuple[Any, ...]

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.name}-{self.param}"


_SEED_BAD = (1.5, True, "1", SEED_MAX + 1, SEED_MIN - 1)
_SEED_GOOD = (None, 0, SEED_MIN, SEED_MAX)
_POSITIVE_BAD = (0, -1, -1e-9, True, "1", NAN, INF)

CASES: tuple[Case, ...] = (
    # aggregation rules
    Case("rule", "multi-krum", "m", (0, -1, 1.5, True, "3"), (1, None)),
    Case("rule", "geometric-median", "tolerance", _POSITIVE_BAD, (1e-12, 1)),
    Case("rule", "geometric-median", "max_iterations", (0, -1, 1.0, True, None), (1, 5)),
    Case("rule", "centered-clipping", "tau", _POSITIVE_BAD, (1e-9, 10)),
    Case("rule", "centered-clipping", "iterations", (0, -1, 2.5, True), (1, 3)),
    Case("rule", "aksel", "mode", ("x", "MID", 1, None), ("mid", "n-f")),
    Case("rule", "condense", "p", (0, -0.1, 1.01, True, NAN), (1, 1e-9, 0.5)),
    Case("rule", "condense", "seed", _SEED_BAD, _SEED_GOOD),
    # pre-aggregation stages
    Case("stage", "bucketing", "s", (0, -1, 1.5, True, None), (1, 3)),
    Case("stage", "bucketing", "seed", (1.5, True, "1", -1, SEED_MAX + 1), (None, 0, SEED_MAX)),
    Case("stage", "clipping", "threshold", _POSITIVE_BAD, (1e-9, 5)),
    # worker attacks
    Case("worker", "random", "scale", _POSITIVE_BAD, (1e-9, 3)),
    Case("worker", "random", "seed", _SEED_BAD, _SEED_GOOD),
    Case("worker", "gaussian", "std", _POSITIVE_BAD, (1e-9, 200)),
    Case("worker", "gaussian", "seed", _SEED_BAD, _SEED_GOOD),
    Case("worker", "signflip", "scale", _POSITIVE_BAD, (1e-9, 100)),
    Case("worker", "drop", "p", (-0.1, 1.01, True, "0.5", NAN), (0, 1, 0.5)),
    Case("worker", "drop", "seed", _SEED_BAD, _SEED_GOOD),
    Case("worker", "little", "z", ("x", True, NAN, INF), (None, 0, -1.5)),
    Case("worker", "empire", "epsilon", _POSITIVE_BAD, (1e-9, 2)),
    *(c for name in ("optimal-little", "optimal-empire") for c in (
        Case("worker", name, "evals", (0, -1, 1.5, True, 1001), (1, 1000)),
        Case("worker", name, "start", ("x", True, NAN, INF, None), (-3, 0, 2.5)),
        Case("worker", name, "delta", _POSITIVE_BAD, (1e-9, 100)),
        Case("worker", name, "ratio", (0.5, 1, 1.2, 0.4, True, NAN), (0.51, 0.99)),
    )),
    Case("worker", "labelflip", "num_classes", (1, 0, 2.0, True), (2, 10)),
    Case("worker", "mimic", "target", (-1, 0.5, True, None), (0, 7)),
    Case("worker", "nan", "value", ("zero", "NaN", NAN, None), ("nan", "inf", "-inf")),
    Case("worker", "crash", "after", (-1, 1.5, True), (0, 3)),
    # server attacks
    Case("server", "random", "std", _POSITIVE_BAD, (1e-9, 2)),
    Case("server", "random", "seed", _SEED_BAD, _SEED_GOOD),
    Case("server", "reversed", "scale", _POSITIVE_BAD, (1e-9, 10)),
    Case("server", "stale", "delay", (0, -3, 2.5, True), (1, 4)),
    Case("server", "nan", "value", ("zero", INF, None), ("nan", "inf", "-inf")),
)

# (rows aggregated, f, largest m accepted): multi-krum's m <= n-f, the one size-dependent bound.
SIZE_CASES: dict[tuple[str, str], list[tuple[int, int, int]]] = {
    ("multi-krum", "m"): [(7, 2, 5), (5, 1, 4), (3, 0, 3)],
}


def declared() -> dict[tuple[str, str, str], Param]:
    """Every parameter the registries declare, by (kind, name, param)."""
    out = {("rule", r.name, p.name): p for r in RULES.values() for p in r.params}
    out.update({("stage", s.name, p.name): p for s in STAGES.values() for p in s.params})
    for kind, table in BY_SIDE.items():
        out.update({(kind, a.name, p.name): p for a in table.values() for p in a.params})
    return out


def missing_cases() -> list[str]:
    """Declared parameters the table forgets (every one is bounded by its type at least), bounded
    ones without an accepted edge, and size limits without a SIZE_CASES entry."""
    covered = {(c.kind, c.name, c.param): c for c in CASES}
    problems = [f"{k}: no case" for k in declared() if k not in covered]
    problems += [f"{k}: not declared" for k in covered if k not in declared()]
    for key, param in declared().items():
        case = covered.get(key)
        if case is not None and (not case.bad or not case.good):
            problems.append(f"{key}: needs refused and accepted values")
        if param.size_limit is not None and (key[1], key[2]) not in SIZE_CASES:
            problems.append(f"{key}: size limit without SIZE_CASES")
    return problems


def bad_values() -> list[tuple[Case, Any]]:
    return [(c, v) for c in CASES for v in c.bad]


def good_values() -> list[tuple[Case, Any]]:
    return [(c, v) for c in CASES for v in c.good]


def value_id(value: Any) -> str:
    return repr(value)[:24]
