"""Pre-aggregation stages, kept free of tensor libraries: one `StageSpec` per stage.

A stage turns the n vectors a node received (f of them possibly Byzantine) into n' vectors with at
most f' Byzantine-influenced ones, before the rule aggregates them. Chained in front of any rule
(`gar: {name: median, preAggregation: [{name: nnm}]}`), they are what the literature shows makes
robust rules hold under stealthy attacks such as A Little Is Enough and under heterogeneous data:

- nnm: nearest-neighbour mixing (Allouah et al. 2023, "Fixing by mixing"): each vector is replaced
  by the mean of its n-f nearest vectors (itself included; equal distances go to the lower row).
  n' = n, f' = f; needs n >= 2f+1.
- bucketing (Karimireddy et al. 2022, "Byzantine-robust learning on heterogeneous datasets via
  bucketing"): the vectors in a random order, cut into buckets of `s` (the last one may be
  smaller), each bucket averaged. n' = ceil(n/s), f' = f (a Byzantine vector spoils one bucket).
- clipping: static clipping, x * min(1, threshold / ||x||). n' = n, f' = f.
- arc: adaptive robust clipping (Allouah et al. 2024): with k = floor(2 (f/n) (n-f)), every vector
  is clipped to the norm of the (k+1)-th largest. n' = n, f' = f; needs n >= 2f+1.

Validation, the webhook and `aggregate()` read the stages here; the implementations
(`garfield.aggregators._preaggregate`) register under the same names and take exactly these
parameters (an import-time check, as for the rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from garfield.aggregators.catalog import Condition
from garfield.params import SEED_MAX, Param, check_params, positive

Shape = Callable[[int, int, Mapping[str, Any]], tuple[int, int]]


def _same(n: int, f: int, values: Mapping[str, Any]) -> tuple[int, int]:
    return n, f


def _buckets(n: int, f: int, values: Mapping[str, Any]) -> tuple[int, int]:
    size = int(values["s"])
    return -(-n // size), f


@dataclass(frozen=True)
class StageSpec:
    """A stage as jobs see it: its condition on the (n, f) coming in, its typed parameters, and
    `shape(n, f, values)`: the (n', f') it hands on."""

    name: str
    condition: Condition
    summary: str
    params: tuple[Param, ...] = ()
    shape: Shape = _same

    def check(self, given: Mapping[str, Any] | None, path: str = "") -> tuple[dict[str, Any], list[str]]:
        return check_params(self.name, given, self.params, path)


_SPECS: tuple[StageSpec, ...] = (
    StageSpec("nnm", Condition(2, 1), "nearest-neighbour mixing: each vector becomes the mean of its n-f nearest"),
    StageSpec("bucketing", Condition(0, 1), "random buckets of s vectors, each averaged: ceil(n/s) vectors on",
              (Param("s", "integer", 2, "vectors per bucket", minimum=1),
               Param("seed", "integer", None, "fixes the shuffle (the same one at every aggregation: for reproducible "
                     "comparisons only); null: a fresh shuffle each time", minimum=0, maximum=SEED_MAX)), _buckets),
    StageSpec("clipping", Condition(0, 1), "static clipping of every vector to a norm of at most threshold",
              (positive("threshold", 2.0, "largest norm a vector keeps"),)),
    StageSpec("arc", Condition(2, 1), "adaptive robust clipping: every vector clipped to the (k+1)-th largest norm, "
                                      "k = floor(2 (f/n) (n-f))"),
)

STAGES: dict[str, StageSpec] = {spec.name: spec for spec in _SPECS}
assert len(STAGES) == len(_SPECS), "two stages share a name"


def stage_spec(name: str) -> StageSpec:
    """The StageSpec of `name`; ValueError naming the known stages otherwise."""
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown pre-aggregation stage {name!r}; known: {', '.join(sorted(STAGES))}") from None


@dataclass(frozen=True)
class Stage:
    """One stage of a chain, as a job names it: the stage and its parameters (defaults filled in
    once checked)."""

    name: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class ChainCheck:
    """What a chain does to (n, f), and what is wrong with it."""

    stages: tuple[Stage, ...]  # with defaults filled in (only meaningful without errors)
    n: int  # vectors the rule gets
    f: int  # Byzantine-influenced ones among them
    errors: tuple[str, ...]


def check_chain(chain: Sequence[Mapping[str, Any] | Stage], n: int, f: int, path: str = "") -> ChainCheck:
    """Each stage's parameters and condition, in order, on the (n, f) the previous one handed on.
    `chain`: stages as manifests write them ({name, params}) or as `Stage`s. Errors name the
    stage's path (`path[i]`), the condition and the numbers."""
    stages: list[Stage] = []
    errors: list[str] = []
    for i, item in enumerate(chain):
        at = f"{path}[{i}]" if path else f"stage {i}"
        name: Any
        given: Any
        if isinstance(item, Stage):
            name, given = item.name, item.params
        elif isinstance(item, Mapping):
            name, given = item.get("name"), item.get("params")
        else:
            errors.append(f"{at}: a stage is a mapping {{name, params}}, got {item!r}")
            break
        if not isinstance(name, str) or name not in STAGES:
            errors.append(f"{at}.name: unknown pre-aggregation stage {name!r}; known: {', '.join(sorted(STAGES))}")
            break
        spec = STAGES[name]
        values, problems = spec.check(given, f"{at}.params" if path else "")
        if problems:
            errors.extend(problems)
            break
        if not spec.condition.holds(n, f):
            errors.append(f"{at}: {name} needs {spec.condition.text()} on the {n} vectors it gets (f={f})")
            break
        stages.append(Stage(name, values))
        n, f = spec.shape(n, f, values)
    return ChainCheck(tuple(stages), n, f, tuple(errors))


def describe(chain: Sequence[Stage]) -> str:
    """'nnm -> bucketing(s=2)': a chain as messages and logs name it."""
    parts = []
    for stage in chain:
        shown = ", ".join(f"{k}={v}" for k, v in stage.params.items() if v is not None)
        parts.append(f"{stage.name}({shown})" if shown else stage.name)
    return " -> ".join(parts)


def names() -> list[str]:
    return sorted(STAGES)
