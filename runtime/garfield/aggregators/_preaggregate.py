"""The pre-aggregation stages on tensors (see `garfield.aggregators.preaggregation` for what each
computes and why). Each takes the (n, d) torch matrix and f and returns a new (n', d) matrix in
the same dtype and on the same device, so one code path serves CPU and GPU, PyTorch and (through
the DLPack bridge) TensorFlow. Norms are taken in float64, one row at a time; NNM's distances
come from the float64 Gram matrix, as the distance-based rules' do. Rows must be finite:
`api.aggregate` removes the others (counted against f) first.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from garfield.aggregators import _backend as be
from garfield.aggregators.preaggregation import STAGES, Stage, StageSpec
from garfield.params import conformance_errors as params_conformance


def _norms(X: torch.Tensor) -> torch.Tensor:
    """float64 norm of each row (on the rows' device)."""
    return torch.stack([torch.linalg.vector_norm(row, dtype=torch.float64) for row in X])


def _clip_to(X: torch.Tensor, norms: torch.Tensor, threshold: float) -> torch.Tensor:
    """x * min(1, threshold / ||x||), a zero vector left as it is."""
    scale = torch.where(norms > threshold, threshold / norms.clamp_min(torch.finfo(torch.float64).tiny),
                        torch.ones_like(norms))
    return X * scale.to(X.dtype).unsqueeze(1)


def nnm(X: torch.Tensor, f: int) -> torch.Tensor:
    """Each row replaced by the mean of its n-f nearest rows (itself first, at distance 0; equal
    distances go to the lower row). The distances come from the float64 Gram matrix (one pass
    over X, the compiled kernel on CPU), the means from one (n, n) x (n, d) product."""
    n = X.shape[0]
    keep = n - f
    D = be.sqdist_from_gram(be.gram(X, np.arange(n, dtype=np.int64)))
    np.fill_diagonal(D, -1.0)  # itself first even among exact copies
    W = np.zeros((n, n))
    for i in range(n):
        W[i, np.argsort(D[i], kind="stable")[:keep]] = 1.0 / keep
    return torch.from_numpy(W).to(device=X.device, dtype=X.dtype) @ X


def bucketing(X: torch.Tensor, f: int, s: int, seed: int | None) -> torch.Tensor:
    """The rows in a random order, cut into buckets of s (the last may be smaller), each averaged.
    The order is drawn afresh at each call (an adversary that cannot predict it cannot gather its
    vectors in one bucket) unless `seed` fixes it."""
    n = X.shape[0]
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n)).to(X.device)
    return torch.stack([X[order[i:i + s]].mean(dim=0) for i in range(0, n, s)])


def clipping(X: torch.Tensor, f: int, threshold: float) -> torch.Tensor:
    """Every row clipped to a norm of at most `threshold`."""
    return _clip_to(X, _norms(X), threshold)


def arc(X: torch.Tensor, f: int) -> torch.Tensor:
    """Every row clipped to the norm of the (k+1)-th largest, k = floor(2 (f/n) (n-f))."""
    n = X.shape[0]
    k = (2 * f * (n - f)) // n
    norms = _norms(X)
    if k == 0:
        return X.clone()
    threshold = float(torch.sort(norms, descending=True).values[k])
    return _clip_to(X, norms, threshold)


StageFn = Callable[..., torch.Tensor]
IMPLEMENTATIONS: dict[str, StageFn] = {"nnm": nnm, "bucketing": bucketing, "clipping": clipping, "arc": arc}


def run_chain(X: torch.Tensor, f: int, chain: Sequence[Stage]) -> torch.Tensor:
    """The stages of `chain` (checked, defaults filled in) applied in order; f is handed on as each
    stage's shape says."""
    for stage in chain:
        spec = STAGES[stage.name]
        X = IMPLEMENTATIONS[stage.name](X, f, **stage.params)
        _, f = spec.shape(X.shape[0], f, stage.params)
    return X


def conformance_errors(specs: Mapping[str, StageSpec], implementations: Mapping[str, StageFn]) -> list[str]:
    """What keeps `implementations` from matching the catalog (`garfield.params.conformance_errors`;
    a stage's keyword parameters follow X and f)."""
    return params_conformance(specs, implementations, leading=2, noun="the function")


_MISMATCH = conformance_errors(STAGES, IMPLEMENTATIONS)
if _MISMATCH:  # not an assert: it must hold under python -O too
    raise AssertionError("pre-aggregation catalog and implementations disagree: " + "; ".join(_MISMATCH))


