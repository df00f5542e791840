"""Typed parameters of the pluggable parts (aggregation rules, attacks), free of tensor libraries.

A rule or an attack declares its parameters once, as a tuple of `Param`s: name, kind, default,
bounds and a one-line doc. `check_params` is the one place that checks a job's (or a caller's)
`params` mapping against them, so `garfield validate`, the operator's webhook, `aggregate()` and
the attack constructors reject the same values with the same words, before any node starts,
instead of a node failing at its first aggregation. Implementations receive checked values with
every default filled in; they keep only checks that need run-time values (n, f, the peers).

Bounds that depend on the size of an aggregation (multi-krum's m <= n-f) are a `SizeLimit`:
validation checks them on the q replies a role aggregates, `aggregate()` on the rows it gets.
"""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

Kind = Literal["number", "integer", "choice"]

# torch.Generator.manual_seed's range: anything outside raises at run time, on the node.
SEED_MIN = -(2**63)
SEED_MAX = 2**64 - 1


@dataclass(frozen=True)
class SizeLimit:
    """An upper bound known only once n (rows aggregated) and f (tolerated) are: `text` as docs
    and messages write it ("n-f"), `of(n, f)` its value."""

    text: str
    of: Callable[[int, int], int]


@dataclass(frozen=True)
class Param:
    """One parameter. `default` None means "derived at run time" (from n and f, or a fresh random
    draw): then None is also an accepted value and `doc` must say what it derives. Numbers must be
    finite; booleans are never numbers; integers pass where a number is expected."""

    name: str
    kind: Kind
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[Any, ...] = ()
    size_limit: SizeLimit | None = None

    def __post_init__(self) -> None:
        # A registry mistake should fail at import, not in a user's job.
        assert self.doc and "\n" not in self.doc, f"{self.name}: needs a one-line doc"
        assert (self.kind == "choice") == bool(self.choices), f"{self.name}: choices go with kind 'choice'"
        assert self.kind != "choice" or (self.minimum is None and self.maximum is None), self.name
        assert self.default is None or self.error(self.default) is None, \
            f"{self.name}: default {self.default!r} fails its own bounds"

    @property
    def nullable(self) -> bool:
        """None is accepted exactly when it is the default (the value is then derived)."""
        return self.default is None

    def type_text(self) -> str:
        """"number", "integer or null", "choice"..."""
        return self.kind + (" or null" if self.nullable else "")

    def bound_text(self) -> str:
        """The static bound as a relation on the name ("tau > 0", "0 < p <= 1"), or ""."""
        if self.kind == "choice":
            return f"{self.name} in {{{', '.join(str(c) for c in self.choices)}}}"
        low = None if self.minimum is None else f"{_num(self.minimum)} {'<' if self.exclusive_minimum else '<='} "
        high = None if self.maximum is None else f" {'<' if self.exclusive_maximum else '<='} {_num(self.maximum)}"
        if low and high:
            return f"{low}{self.name}{high}"
        if self.minimum is not None:  # (low is set exactly then)
            return f"{self.name} {'>' if self.exclusive_minimum else '>='} {_num(self.minimum)}"
        if high:
            return f"{self.name}{high}"
        return ""

    def allowed_text(self) -> str:
        """Everything that bounds the value, static and size-dependent, for the reference docs."""
        parts = [p for p in (self.bound_text(),) if p]
        if self.size_limit is not None:
            parts.append(f"{self.name} <= {self.size_limit.text}")
        return "; ".join(parts) or ("any finite number" if self.kind == "number" else "any integer")

    def error(self, value: Any) -> str | None:
        """None if `value` is acceptable, else "needs <what>, got <value>" (the caller prefixes the
        field path and the owner's name)."""
        if value is None and self.nullable:
            return None
        if self.kind == "choice":
            if any(value == c and type(value) is type(c) for c in self.choices):
                return None
            return f"needs {self.name} to be one of {', '.join(repr(c) for c in self.choices)}, got {value!r}"
        if not _is_kind(value, self.kind):
            what = "an integer" if self.kind == "integer" else "a finite number"
            bound = self.bound_text()
            rest = f" ({bound})" if bound else ""
            return f"needs {self.name} to be {what}{' or null' if self.nullable else ''}{rest}, got {value!r}"
        if not self._in_bounds(value):
            return f"needs {self.bound_text()}, got {value!r}"
        return None

    def size_error(self, value: Any, n: int, f: int) -> str | None:
        """None, or the message for a value over its `size_limit` with n rows and f tolerated."""
        if self.size_limit is None or value is None:
            return None
        limit = self.size_limit.of(n, f)
        if value <= limit:
            return None
        return f"needs {self.name} <= {self.size_limit.text} = {limit}, got {value!r}"

    def _in_bounds(self, value: Any) -> bool:
        if self.minimum is not None and (value <= self.minimum if self.exclusive_minimum else value < self.minimum):
            return False
        if self.maximum is not None and (value >= self.maximum if self.exclusive_maximum else value > self.maximum):
            return False
        return True


def _is_kind(value: Any, kind: Kind) -> bool:
    if isinstance(value, bool):
        return False  # True == 1 in Python, but `tau: true` in a manifest is a mistake
    if kind == "integer":
        return isinstance(value, numbers.Integral)
    return isinstance(value, numbers.Real) and math.isfinite(value)


def _num(x: float) -> str:
    """1.0 -> "1", 0.5 -> "0.5", 2**64 - 1 -> "2^64-1": bounds read as written."""
    if isinstance(x, int) and abs(x) >= 2**32:
        for k in range(32, 129):
            for value, text in ((2**k, f"2^{k}"), (2**k - 1, f"2^{k}-1"), (-(2**k), f"-2^{k}")):
                if x == value:
                    return text
        return str(x)
    return str(int(x)) if float(x).is_integer() else repr(x)


def check_params(owner: str, given: Mapping[str, Any] | None, params: tuple[Param, ...],
                 path: str = "") -> tuple[dict[str, Any], list[str]]:
    """The one check of a params mapping: unknown keys and every value against its Param.

    Returns (values, errors): `values` has every parameter, defaults filled in; `errors` holds one
    message per problem, "<path>.<key>: <owner> needs tau > 0, got -1" (without `path`, just
    "<owner> needs ..."). A misspelled key is an error, not ignored: it would otherwise silently
    take its default (or, for an attack, leave the run without its attacker).
    """
    errors: list[str] = []
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        return {}, [f"{path + ': ' if path else ''}{owner} parameters must be a mapping, got {given!r}"]
    known = {p.name: p for p in params}
    for key in given:
        if key not in known:
            allowed = ", ".join(sorted(known)) or "none"
            errors.append(f"{_at(path, key)}{owner} has no parameter {key!r} (parameters: {allowed})")
    values: dict[str, Any] = {}
    for p in params:
        value = given.get(p.name, p.default)
        problem = p.error(value)
        if problem:
            errors.append(f"{_at(path, p.name)}{owner} {problem}")
        values[p.name] = value
    return values, errors


def check_sizes(owner: str, values: Mapping[str, Any], params: tuple[Param, ...], n: int, f: int,
                context: str, path: str = "") -> list[str]:
    """Size-dependent bounds of already-checked `values` (see `SizeLimit`); `context` says what
    n and f are, e.g. "n=5, f=1" or "on the 5 replies it aggregates, f=2"."""
    errors = []
    for p in params:
        problem = p.size_error(values.get(p.name), n, f)
        if problem:
            errors.append(f"{_at(path, p.name)}{owner} {problem} ({context})")
    return errors


def _at(path: str, key: Any) -> str:
    return f"{path}.{key}: " if path else ""


# Shared declarations, so the same parameter reads the same everywhere.
def seed(owner_draws: str) -> Param:
    """An optional random seed in torch's range; null draws a fresh one per run."""
    return Param("seed", "integer", None, f"seeds the {owner_draws}; null: a fresh draw per run",
                 minimum=SEED_MIN, maximum=SEED_MAX)


def positive(name: str, default: float, doc: str) -> Param:
    """A finite number > 0 (scales, standard deviations, tolerances)."""
    return Param(name, "number", default, doc, minimum=0, exclusive_minimum=True)


def conformance_errors(specs: Mapping[str, Any], implementations: Mapping[str, Callable[..., Any]], *, leading: int,
                       noun: str) -> list[str]:
    """What keeps `implementations` from matching a registry's `specs` (entries with `.params`): a
    name on one side only, or a callable whose parameters after its first `leading` are not exactly
    the entry's, declare a default (defaults live in the registry only) or cannot be passed by
    keyword. One check for the rules, the pre-aggregation stages and the attacks, each of which
    holds its implementations to it at import."""
    errors = [f"{name}: in the catalog, not implemented" for name in sorted(set(specs) - set(implementations))]
    errors += [f"{name}: implemented, not in the catalog" for name in sorted(set(implementations) - set(specs))]
    for name in sorted(set(specs) & set(implementations)):
        rest = list(inspect.signature(implementations[name]).parameters.values())[leading:]
        declared = [p.name for p in specs[name].params]
        if sorted(p.name for p in rest) != sorted(declared):
            errors.append(f"{name}: {noun} takes {[p.name for p in rest]}, the catalog declares {declared}")
        errors += [f"{name}: {p.name} has a default in {noun}" for p in rest if p.default is not p.empty]
        errors += [f"{name}: {p.name} cannot be passed by keyword" for p in rest
                   if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return errors
