"""`aggregate(name, gradients, f, **params)`: checks, non-finite policy, dispatch, conversion.

Non-finite policy: a row holding a NaN or an infinity can only come from a Byzantine node (or a
diverged one, which is no better), so it is removed before the rule runs and counted against f:
with k such rows out of n, the rule aggregates the n-k others tolerating f-k. More than f such
rows means the "at most f Byzantine" assumption is broken and raises ValueError. Distance-based
rules also remove a row whose squared norm overflows float64 (|x| > ~1e154): no honest gradient
is that large, and its distances would be inf - inf. Detection costs no extra pass: the
distance-based rules read the diagonal of the Gram matrix (or the squared norms) they compute
anyway; the coordinate-wise kernels accumulate x - x per row while loading (NaN iff a value is
not finite) and sum-based outputs turn non-finite; only then are the rows checked exactly and
the rule rerun without them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from garfield.aggregators import _backend as be
from garfield.aggregators._bridge import as_matrix
from garfield.aggregators.catalog import rule_spec
from garfield.aggregators.preaggregation import Stage, check_chain, describe
from garfield.aggregators.rules import IMPLEMENTATIONS, Batch


def _check_f(name: str, f: Any) -> int:
    """f as an int; ValueError unless it is a non-negative integer (booleans are not)."""
    if not isinstance(f, (int, np.integer)) or isinstance(f, bool) or f < 0:
        raise ValueError(f"{name}: f must be a non-negative integer, got {f!r}")
    return int(f)


def _check(name: str, n: int, f: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The catalog's checks (condition, parameters and their bounds, m <= n-f): the same ones
    `garfield validate` applies to a job. Returns the parameters with defaults filled in."""
    spec = rule_spec(name)
    f = _check_f(name, f)
    if not spec.condition.holds(n, int(f)):
        raise ValueError(f"{name} needs {spec.condition.text()}: got n={n}, f={f}")
    values, errors = spec.check(params)
    if not errors:
        errors = spec.check_sizes(values, n, int(f), f"n={n}, f={f}")
    if errors:
        raise ValueError("; ".join(errors))
    return values


def _nonfinite_rows(X: torch.Tensor) -> np.ndarray:
    """Exact check, row by row (only run once a cheaper signal said something is non-finite)."""
    return np.array([i for i in range(X.shape[0]) if not bool(torch.isfinite(X[i]).all())], dtype=np.int64)


def _refuse(name: str, n: int, f: int, bad: np.ndarray) -> None:
    if len(bad) > f:
        raise ValueError(
            f"{name}: {len(bad)} of the {n} vectors hold NaN or infinite values, more than f={f}: "
            f"the at-most-f-Byzantine assumption is broken (rows {bad.tolist()})"
        )


def _pre_aggregate(name: str, X: torch.Tensor, f: Any, pre: Sequence[Stage | Mapping[str, Any]],
                   info: dict[str, Any] | None) -> tuple[torch.Tensor, int]:
    """The pre-aggregation chain in front of rule `name`: rows holding NaN/inf are removed first
    (counted against f, as the rules' own policy does: the stages mix rows, so one such row would
    spoil all of them), then the stages run. Returns the rule's input and its f."""
    f = _check_f(name, f)
    n = X.shape[0]
    finite = torch.isfinite(X).all(dim=1).cpu().numpy()
    bad = np.flatnonzero(~finite)
    _refuse(name, n, f, bad)
    if len(bad):
        X = X[torch.from_numpy(np.flatnonzero(finite)).to(X.device)]
        f -= len(bad)
    chain = check_chain(pre, X.shape[0], f)
    if chain.errors:
        raise ValueError(f"{name}'s pre-aggregation: " + "; ".join(chain.errors))
    from garfield.aggregators._preaggregate import run_chain

    if info is not None:
        info["pre_dropped"] = [int(i) for i in bad]
        info["pre_aggregation"] = describe(chain.stages)
    return run_chain(X, f, chain.stages), chain.f


def aggregate(name: str, gradients: Any, f: int, *, out: Any = None, info: dict[str, Any] | None = None,
              pre: Sequence[Stage | Mapping[str, Any]] = (), **params: Any) -> Any:
    """Aggregate the rows of `gradients` with rule `name` tolerating `f` Byzantine rows.

    gradients: an (n, d) tensor or a list of n 1-D tensors, torch or TensorFlow (or numpy).
    Returns a 1-D tensor of the same framework, device and dtype. `out`: optional preallocated
    (d,) torch tensor to write into (avoids a fresh allocation per call on the hot path).
    `info`: optional dict the rule fills with diagnostics (selected rows, iterations...).
    Raises ValueError for an unknown rule or parameter, a parameter value out of its catalog
    bounds (the same check as `garfield validate`), a violated resilience condition, or more
    than f non-finite rows. `pre`: pre-aggregation stages run first, in order
    (`garfield.aggregators.preaggregation`), each a `Stage` or a {name, params} mapping; the
    rule then aggregates what they hand on, with the f they hand on.
    """
    X, back = as_matrix(gradients)
    if pre:
        rule_spec(name)  # an unknown rule fails before any stage runs
        X, f = _pre_aggregate(name, X, f, pre, info)
    n, d = X.shape
    try:
        params = _check(name, n, f, params)
    except ValueError as exc:
        if pre:
            raise ValueError(f"{exc} (the vectors its pre-aggregation hands on)") from None
        raise
    f = int(f)
    rule = IMPLEMENTATIONS[name]
    if out is None:
        out = torch.empty(d, dtype=X.dtype, device=X.device)
    elif not (isinstance(out, torch.Tensor) and out.shape == (d,) and out.dtype == X.dtype and out.device == X.device
              and out.is_contiguous()):
        raise ValueError(f"out must be a contiguous torch tensor of shape ({d},), dtype {X.dtype}, on {X.device}")
    rows = np.arange(n, dtype=np.int64)
    check = rule.check(params)
    G = None
    if check == "scan":
        # Optimistic: run the rule; its first pass marks non-finite rows (poison), and any
        # non-finite input also shows in a sum-based output. Only then check exactly and rerun.
        batch = Batch(X=X, rows=rows, f=f, out=out, poison=np.zeros(n))
        result = rule.fn(batch, **params)
        if batch.poison is not None and np.isfinite(batch.poison).all() and bool(torch.isfinite(result).all()):
            if info is not None:
                info.update(batch.info, dropped=[])
            return back(result)
        bad = _nonfinite_rows(X)
    else:
        if check == "gram":
            G = be.gram(X, rows)
            diag = np.diag(G)
        else:
            diag = be.sqnorms(X, rows)
            G = np.diag(diag)
        bad = np.flatnonzero(~np.isfinite(diag))
    _refuse(name, n, f, bad)
    if len(bad):
        keep = np.setdiff1d(rows, bad)
        if G is not None:
            G = G[np.ix_(keep, keep)]
        rows = keep
    batch = Batch(X=X, rows=rows, f=f - len(bad), out=out, gram=G, poison=np.zeros(len(rows)))
    result = rule.fn(batch, **params)
    if info is not None:
        info.update(batch.info, dropped=[int(i) for i in bad])
    return back(result)
