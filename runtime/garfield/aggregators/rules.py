"""The aggregation rules. Each takes a `Batch` (the kept rows of the input, the effective f, an
output buffer) and fills the output; `api.aggregate` does the checks, the non-finite policy and
the framework conversion around them. Parameters, their defaults and bounds are declared once, in
`garfield.aggregators.catalog`: a rule gets every parameter as a keyword, already checked, and
declares no defaults of its own (an import-time check holds `IMPLEMENTATIONS` to the catalog).

Conventions (n = rows aggregated after the non-finite policy, f = Byzantine rows tolerated among
them; ties are broken toward the lowest row index unless stated):

- average: the mean (not robust).
- median: coordinate-wise median; for even n the mean of the two middle values.
- trimmed-mean: per coordinate, drop the f largest and the f smallest values, average the n-2f left.
- meamed: per coordinate, the mean of the n-f values closest to the median (Xie et al. 2018,
  "Generalized Byzantine-tolerant SGD"). Ties in distance go to the smaller values.
- phocas: per coordinate, the mean of the n-f values closest to the f-trimmed mean (Xie et al. 2018).
- krum: the input with the smallest score, the score being the sum of squared distances to its
  n-f-2 nearest other inputs (Blanchard et al. 2017).
- multi-krum: the mean of the m inputs with the smallest Krum scores (scores computed once, on all
  inputs), default m = n-f.
- bulyan: theta = n-2f inputs chosen by iterated Krum (Krum on the remaining inputs, with the
  same f, winner removed, theta times; equal Krum scores, which one neighbour makes structural at
  the last steps, go to the smaller total distance to the remaining inputs); then per coordinate the mean of the beta = theta-2f
  selected values closest to their median (El Mhamdi et al. 2018).
- mda: minimum-diameter averaging: the mean of the subset of n-f inputs with the smallest
  diameter (largest pairwise distance); exact (pruned clique search, see `_kernels`); ties go to
  the lexicographically smallest index set (El Mhamdi et al. 2020).
- geometric-median: argmin_z sum_i ||x_i - z||, by (smoothed) Weiszfeld from the mean until the
  step is below `tolerance` x the mean distance to the iterate, at most `max_iterations` steps.
- centered-clipping: from v = 0, `iterations` times v <- v + (1/n) sum_i (x_i - v) min(1, tau /
  ||x_i - v||) (Karimireddy et al. 2021).
- aksel: the mean of the c inputs closest (squared distance) to the coordinate-wise median,
  c = ceil(n/2) in mode "mid", n-f in mode "n-f" (Boussetta et al. 2020; Garfield's `aksel`).
- monna: the mean of the n-f inputs nearest the first one (Allouah et al. 2023, "Fixing by
  mixing"; the first input is the aggregating node's own vector, as for condense), itself included.
- smea: smallest maximum eigenvalue averaging (Allouah et al. 2023, "On the privacy-robustness-
  utility trilemma"): the mean of the (n-f)-subset whose empirical covariance has the smallest
  largest eigenvalue; exact (every subset, the eigenvalue from the subset's centred Gram matrix,
  which has the covariance's nonzero spectrum); ties go to the lexicographically smallest subset.
- caf: covariance-bound agnostic filter (Allouah, Guerraoui and Stephan 2025): weights c_i = 1;
  while sum c > n-2f: weighted mean mu and covariance, its top eigenvector v, tau_i = ((x_i -
  mu).v)^2, c_i <- c_i (1 - tau_i / max tau over the inputs still weighted); the result is the
  weighted mean whose covariance had the smallest top eigenvalue. Exact eigenpairs (from the
  weighted centred Gram matrix), where byzfl takes one power step from a random vector.
- condense: per coordinate, with probability p the coordinate-wise median, otherwise the value of
  the first input (Garfield's `condense`: the first input is the aggregating node's own vector,
  so this rule is deliberately not permutation invariant).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from garfield.aggregators import _backend as be
from garfield.aggregators import _kernels as K
from garfield.aggregators.catalog import RULES, RuleSpec
from garfield.params import conformance_errors as params_conformance


@dataclass
class Batch:
    """The rows a rule aggregates: X[rows] (rows sorted, non-finite ones already removed)."""

    X: torch.Tensor
    rows: np.ndarray
    f: int
    out: torch.Tensor
    gram: np.ndarray | None = None  # float64 Gram matrix of X[rows], when the rule needs it
    info: dict[str, Any] = field(default_factory=dict)
    # Left non-finite by the coordinate kernels at rows holding NaN/inf (see api's policy).
    poison: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.rows)

    def distances(self) -> np.ndarray:
        assert self.gram is not None
        return be.sqdist_from_gram(self.gram)

    def mean_of(self, local: np.ndarray | Sequence[int]) -> torch.Tensor:
        """Mean of the kept rows at local positions `local` (0..n-1)."""
        weights = np.zeros(self.n)
        weights[np.asarray(local, dtype=np.int64)] = 1.0 / len(local)
        return be.weighted_sum(self.X, self.rows, weights, self.out)


def _scan(params: dict[str, Any]) -> str:
    return "scan"


def _gram(params: dict[str, Any]) -> str:
    return "gram"


@dataclass(frozen=True)
class Rule:
    """`check(params)` says how the non-finite policy finds bad rows before/while the rule runs:
    "gram" (the rule needs the Gram matrix: its diagonal), "norms" (squared norms suffice), or
    "scan" (the rule's own first pass reports them; see `api`)."""

    name: str
    fn: Callable[..., torch.Tensor]
    check: Callable[[dict[str, Any]], str] = _scan


# --- coordinate-wise -----------------------------------------------------------------------------


def average(b: Batch) -> torch.Tensor:
    """Mean of the inputs (not robust: one Byzantine input moves it anywhere)."""
    return b.mean_of(np.arange(b.n))


def median(b: Batch) -> torch.Tensor:
    """Coordinate-wise median; for even n the mean of the two middle values."""
    if b.n == 1:
        return b.mean_of([0])
    return be.coordinate(b.X, b.rows, be.MEDIAN, 0, 0, b.out, b.poison)


def trimmed_mean(b: Batch) -> torch.Tensor:
    """Per coordinate, the mean of the n-2f values left after dropping the f largest and f smallest."""
    if b.f == 0:
        return average(b)
    return be.coordinate(b.X, b.rows, be.TRIMMED, b.f, 0, b.out, b.poison)


def meamed(b: Batch) -> torch.Tensor:
    """Per coordinate, the mean of the n-f values closest to the median (Xie et al. 2018); equal
    distances go to the smaller values."""
    if b.f == 0:
        return average(b)
    return be.coordinate(b.X, b.rows, be.WINDOW_MEDIAN, 0, b.n - b.f, b.out, b.poison)


def phocas(b: Batch) -> torch.Tensor:
    """Per coordinate, the mean of the n-f values closest to the f-trimmed mean (Xie et al. 2018)."""
    if b.f == 0:
        return average(b)
    return be.coordinate(b.X, b.rows, be.WINDOW_TRIMMED, b.f, b.n - b.f, b.out, b.poison)


def condense(b: Batch, p: float, seed: int | None) -> torch.Tensor:
    """Per coordinate, with probability p the median, else the first input's value (Garfield's
    Condense; the first input is the aggregating node's own vector). `seed` fixes the draw."""
    out = median(b)
    if p >= 1.0:
        return out
    gen = None
    if seed is not None:
        gen = torch.Generator(device=b.X.device)
        gen.manual_seed(int(seed))
    keep_own = torch.rand(out.shape[0], generator=gen, device=out.device) >= p
    own = b.X[int(b.rows[0])]
    out.copy_(torch.where(keep_own, own, out))
    return out


# --- distance-based ------------------------------------------------------------------------------


def _krum_scores(D: np.ndarray, active: np.ndarray, f: int) -> np.ndarray:
    """Krum scores of the `active` positions among themselves: sum of the squared distances to
    the (len(active) - f - 2) nearest other active inputs."""
    sub = D[np.ix_(active, active)].copy()
    np.fill_diagonal(sub, np.inf)
    k = max(len(active) - f - 2, 0)
    if k == 0:
        return np.zeros(len(active))
    scores: np.ndarray = np.sort(sub, axis=1)[:, :k].sum(axis=1)
    return scores


def krum(b: Batch) -> torch.Tensor:
    """The input minimising the sum of squared distances to its n-f-2 nearest other inputs
    (Blanchard et al. 2017); the lowest index on ties."""
    scores = _krum_scores(b.distances(), np.arange(b.n), b.f)
    best = int(np.argmin(scores))  # first minimum: the lowest index on ties
    b.info["selected"] = [int(b.rows[best])]
    return b.mean_of([best])


def multi_krum(b: Batch, m: int | None) -> torch.Tensor:
    """Mean of the m inputs with the smallest Krum scores (computed once), m = n-f when None
    (`api` has checked 1 <= m <= n-f; dropping k non-finite rows leaves n-f unchanged)."""
    m = b.n - b.f if m is None else int(m)
    scores = _krum_scores(b.distances(), np.arange(b.n), b.f)
    chosen = np.argsort(scores, kind="stable")[:m]
    b.info["selected"] = sorted(int(b.rows[i]) for i in chosen)
    return b.mean_of(chosen)


def bulyan(b: Batch) -> torch.Tensor:
    """El Mhamdi et al. 2018: theta = n-2f inputs by iterated Krum, then per coordinate the mean
    of the beta = theta-2f selected values closest to their median."""
    theta = b.n - 2 * b.f
    beta = theta - 2 * b.f
    D = b.distances()
    remaining = list(range(b.n))
    chosen: list[int] = []
    for _ in range(theta):
        active = np.array(remaining, dtype=np.int64)
        scores = _krum_scores(D, active, b.f)
        # Equal scores are structural late in the iteration (with one neighbour, two mutual
        # nearest neighbours always tie): break them by the total distance to the remaining
        # inputs, then by index, so the selection does not depend on the input order.
        spread = D[np.ix_(active, active)].sum(axis=1)
        pick = remaining[int(np.lexsort((active, spread, scores))[0])]
        chosen.append(pick)
        remaining.remove(pick)
    chosen.sort()
    rows = b.rows[np.array(chosen, dtype=np.int64)]
    b.info["selected"] = [int(r) for r in rows]
    if beta == theta:
        return be.weighted_sum(b.X, rows, np.full(theta, 1.0 / theta), b.out)
    return be.coordinate(b.X, np.ascontiguousarray(rows), be.WINDOW_MEDIAN, 0, beta, b.out)


def mda(b: Batch) -> torch.Tensor:
    """Mean of the n-f inputs of minimum diameter (exact; lexicographically smallest on ties)."""
    k = b.n - b.f
    if k == b.n:
        return average(b)
    subset = K.min_diameter_subset(np.ascontiguousarray(b.distances()), k)
    b.info["selected"] = [int(b.rows[i]) for i in subset]
    return b.mean_of(subset)


def geometric_median(b: Batch, tolerance: float, max_iterations: int) -> torch.Tensor:
    """Smoothed Weiszfeld from the mean, in the span of the inputs (Gram matrix only), until the
    step is at most `tolerance` x the mean distance to the iterate."""
    alpha, iterations, converged = K.weiszfeld(np.ascontiguousarray(b.gram), float(tolerance), int(max_iterations), 1e-9)
    b.info.update(iterations=int(iterations), converged=bool(converged))
    return be.weighted_sum(b.X, b.rows, alpha, b.out)


def centered_clipping(b: Batch, tau: float, iterations: int) -> torch.Tensor:
    """Karimireddy et al. 2021 from v = 0: v <- v + mean_i (x_i - v) min(1, tau / ||x_i - v||)."""
    alpha = K.centered_clipping(np.ascontiguousarray(b.gram), float(tau), int(iterations))
    return be.weighted_sum(b.X, b.rows, alpha, b.out)


def aksel(b: Batch, mode: str) -> torch.Tensor:
    """Mean of the c inputs closest to the coordinate-wise median: c = ceil(n/2) ("mid") or n-f."""
    c = (b.n + 1) // 2 if mode == "mid" else b.n - b.f  # the catalog allows only "mid" and "n-f"
    center = median(b)  # into the output buffer, overwritten below
    if b.poison is not None and not np.isfinite(b.poison).all():
        return center  # non-finite rows: the policy reruns the rule without them
    dist = be.sqdist(b.X, b.rows, center)
    chosen = np.argsort(dist, kind="stable")[:c]
    b.info["selected"] = sorted(int(b.rows[i]) for i in chosen)
    return b.mean_of(chosen)


def monna(b: Batch) -> torch.Tensor:
    """Mean of the n-f inputs nearest the first one (the node's own vector), itself included;
    equal distances go to the lower index."""
    D = b.distances()
    order = np.lexsort((np.arange(b.n), D[0]))
    chosen = order[: b.n - b.f]
    b.info["selected"] = sorted(int(b.rows[i]) for i in chosen)
    return b.mean_of(chosen)


def _centred(G: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """K_ij = (x_i - mu).(x_j - mu) for mu the `weights`-weighted mean, from the Gram matrix."""
    total = weights.sum()
    m = G @ weights / total
    s = float(weights @ G @ weights) / total**2
    K: np.ndarray = G - m[:, None] - m[None, :] + s
    return K


# Subsets whose centred Gram matrices are stacked for one batched eigvalsh call.
_SUBSET_BATCH = 4096


def smea(b: Batch) -> torch.Tensor:
    """Mean of the (n-f)-subset of smallest top covariance eigenvalue (exact; lexicographically
    smallest subset on ties)."""
    k = b.n - b.f
    if k == b.n:
        return average(b)
    G = b.gram
    assert G is not None
    best, best_value = None, np.inf
    combos = itertools.combinations(range(b.n), k)
    while True:
        chunk = np.array(list(itertools.islice(combos, _SUBSET_BATCH)), dtype=np.int64)
        if len(chunk) == 0:
            break
        S = G[chunk[:, :, None], chunk[:, None, :]]  # (m, k, k)
        S = S - S.mean(axis=1, keepdims=True) - S.mean(axis=2, keepdims=True) + S.mean(axis=(1, 2), keepdims=True)
        top = np.linalg.eigvalsh(S)[:, -1] / k
        i = int(np.argmin(top))  # first minimum: the lexicographically smallest subset
        if top[i] < best_value:
            best, best_value = chunk[i], float(top[i])
    assert best is not None
    b.info["selected"] = [int(b.rows[i]) for i in best]
    b.info["eigenvalue"] = best_value
    return b.mean_of(best)


def caf(b: Batch) -> torch.Tensor:
    """Covariance-bound agnostic filter: shrink weights along the top eigenvector of the weighted
    covariance until they sum to n-2f; the weighted mean of smallest top eigenvalue seen."""
    G = b.gram
    assert G is not None
    n, f = b.n, b.f
    c = np.ones(n)
    best, best_value = c.copy(), np.inf
    rounds = 0
    while c.sum() > n - 2 * f + 1e-9 and rounds <= n:
        rounds += 1
        total = c.sum()
        K = _centred(G, c)
        w = np.sqrt(c)
        values, vectors = np.linalg.eigh(w[:, None] * K * w[None, :] / total)
        top = float(values[-1])
        if top < best_value:
            best, best_value = c.copy(), top
        if top <= 0:
            break  # no spread left: the weighted mean is as good as it gets
        tau = (K @ (w * vectors[:, -1])) ** 2  # ((x_i - mu).v)^2, up to v's scale
        tau_max = float(tau[c > 0].max())
        if tau_max <= 0:
            break
        c = np.clip(c * (1.0 - tau / tau_max), 0.0, None)
    b.info.update(rounds=rounds, eigenvalue=best_value, weights=[float(x) for x in best])
    return be.weighted_sum(b.X, b.rows, best / best.sum(), b.out)


IMPLEMENTATIONS: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("average", average),
        Rule("median", median),
        Rule("trimmed-mean", trimmed_mean),
        Rule("meamed", meamed),
        Rule("phocas", phocas),
        Rule("condense", condense),
        Rule("krum", krum, _gram),
        Rule("multi-krum", multi_krum, _gram),
        Rule("bulyan", bulyan, _gram),
        Rule("mda", mda, _gram),
        Rule("geometric-median", geometric_median, _gram),
        # One clipping step from v = 0 needs only the norms ||x_i||.
        Rule("centered-clipping", centered_clipping, lambda p: "norms" if p["iterations"] == 1 else "gram"),
        Rule("aksel", aksel),
        Rule("monna", monna, _gram),
        Rule("smea", smea, _gram),
        Rule("caf", caf, _gram),
    )
}


def conformance_errors(specs: Mapping[str, RuleSpec], implementations: Mapping[str, Rule]) -> list[str]:
    """What keeps `implementations` from matching the catalog (`garfield.params.conformance_errors`;
    a rule's keyword parameters follow its Batch)."""
    functions = {name: rule.fn for name, rule in implementations.items()}
    return params_conformance(specs, functions, leading=1, noun="the function")


_MISMATCH = conformance_errors(RULES, IMPLEMENTATIONS)
if _MISMATCH:  # not an assert: it must hold under python -O too
    raise AssertionError("aggregation rule catalog and implementations disagree: " + "; ".join(_MISMATCH))
