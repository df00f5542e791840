"""The four primitives every rule is built from, each with a compiled CPU kernel and a torch path.

* `coordinate`: per-coordinate order statistics (median, trimmed mean, mean of a window of the
  sorted values around a centre);
* `gram`: the float64 Gram matrix of the kept rows, from which every distance-based rule works;
* `weighted_sum`: sum_j w_j x_j over kept rows (the output of every selection/averaging rule);
* `sqdist`: squared distances from each kept row to one vector.

CPU float32/float64 tensors go to the numba kernels in `_kernels`, split over threads (the
kernels release the GIL) and never copying the input. Anything else (CUDA, other dtypes) takes the
torch path: the same arithmetic in device-agnostic torch ops, in column chunks so the temporary
memory stays a fraction of the input. `force_torch()` makes CPU tensors take the torch path too,
which is how the tests exercise the CUDA code on a CPU-only machine.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import torch

from garfield.aggregators import _kernels as K

MEDIAN, TRIMMED, WINDOW_MEDIAN, WINDOW_TRIMMED = K.MEDIAN, K.TRIMMED, K.WINDOW_MEDIAN, K.WINDOW_TRIMMED

_state = threading.local()
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid = -1
_pool_size = 0
# Elements per column chunk on the torch path. Each chunk's temporaries (a gathered copy, float64
# or sort values plus int64 indices) are several times its size, so on the host a chunk of 2^19
# (2 MB of float32) keeps the peak well under the input's size; on an accelerator bigger chunks
# mean fewer kernel launches, and device memory is not the host's RSS.
_TORCH_CHUNK_HOST = 1 << 19
_TORCH_CHUNK_DEVICE = 1 << 22


def _torch_chunk(X: torch.Tensor, m: int) -> int:
    """Columns per chunk for m rows of X on the torch path."""
    elements = _TORCH_CHUNK_HOST if X.device.type == "cpu" else _TORCH_CHUNK_DEVICE
    return max(1, elements // max(m, 1))


@contextlib.contextmanager
def force_torch() -> Iterator[None]:
    """Within this context (this thread), CPU tensors take the torch path (the CUDA code)."""
    old = getattr(_state, "torch_only", False)
    _state.torch_only = True
    try:
        yield
    finally:
        _state.torch_only = old


def compiled(X: torch.Tensor) -> bool:
    """Whether X goes to the compiled kernels (CPU, float32/float64, unit stride along rows)."""
    return (
        not getattr(_state, "torch_only", False)
        and X.device.type == "cpu"
        and X.dtype in (torch.float32, torch.float64)
        and X.stride(1) == 1
    )


def _executor(threads: int) -> ThreadPoolExecutor:
    """One process-wide pool, rebuilt after a fork (a forked child inherits no threads)."""
    global _pool, _pool_pid, _pool_size
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid() or _pool_size != threads:
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="garfield-gar")
            _pool_pid, _pool_size = os.getpid(), threads
        return _pool


_MIN_PARALLEL = 1 << 20  # elements (rows x coordinates): below this a thread handoff costs more than it saves


def _ranges(d: int, block: int, work: int) -> list[tuple[int, int]]:
    threads = max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
    if work < _MIN_PARALLEL:
        threads = 1
    blocks = -(-d // block)
    per = -(-blocks // threads)
    out = []
    for t in range(threads):
        lo, hi = t * per * block, min(d, (t + 1) * per * block)
        if lo < hi:
            out.append((lo, hi))
    return out


def _run(call: Callable[[int, int], None], d: int, block: int, rows: int) -> None:
    ranges = _ranges(d, block, rows * d)
    if len(ranges) == 1:
        call(*ranges[0])
        return
    pool = _executor(len(ranges))
    futures = [pool.submit(call, lo, hi) for lo, hi in ranges[1:]]
    call(*ranges[0])  # the calling thread works too
    for fut in futures:
        fut.result()


def _np(X: torch.Tensor) -> np.ndarray:
    return X.detach().numpy()


def _block(m: int, budget: int = 6144) -> int:
    """Coordinates per block so that m rows of the block fit in L1 (budget elements)."""
    return max(16, min(2048, (budget // max(m, 1)) // 16 * 16))


def _acc_dtype(X: torch.Tensor) -> torch.dtype:
    return torch.promote_types(X.dtype, torch.float32)


# --- coordinate-wise order statistics ------------------------------------------------------------


def coordinate(X: torch.Tensor, rows: np.ndarray, mode: int, f: int, w: int, out: torch.Tensor,
               poison: np.ndarray | None = None) -> torch.Tensor:
    """Per coordinate over the rows `rows` of X: see `_kernels.coordinate_kernel` for `mode`.
    `poison` (len(rows) float64), when given, is left non-finite at the rows holding a NaN or inf."""
    from garfield.aggregators._networks import network

    m = len(rows)
    d = X.shape[1]
    if compiled(X):
        if mode == MEDIAN:
            net = network(m, ((m - 1) // 2, m // 2))
        else:
            net = network(m)
        Xn, on, B = _np(X), _np(out), _block(m)
        flags: list[np.ndarray] = []

        def call(lo: int, hi: int) -> None:
            local = np.zeros(m)
            K.coordinate_kernel(Xn, rows, net, mode, f, w, lo, hi, on, B, local)
            flags.append(local)

        _run(call, d, B, m)
        if poison is not None:
            poison += np.sum(flags, axis=0)
        return out
    idx = torch.as_tensor(rows, device=X.device)
    acc = _acc_dtype(X)
    chunk = _torch_chunk(X, m)
    for s in range(0, d, chunk):
        e = min(d, s + chunk)
        v = X[:, s:e].index_select(0, idx)
        if poison is not None:
            poison[~torch.isfinite(v).all(dim=1).cpu().numpy()] = np.nan
        v = v.sort(dim=0).values
        if mode == MEDIAN:
            res = 0.5 * v[(m - 1) // 2].to(acc) + 0.5 * v[m // 2].to(acc)
        elif mode == TRIMMED:
            res = v[f : m - f].to(acc).sum(0) / (m - 2 * f)
        else:
            va = v.to(acc)
            if mode == WINDOW_MEDIAN:
                cen = 0.5 * va[(m - 1) // 2] + 0.5 * va[m // 2]
            else:
                cen = va[f : m - f].sum(0) / (m - 2 * f)
            # As in the kernel: the first window whose left end is no farther from the centre
            # than the value past its right end, else the last one (argmax: the first True);
            # its own values are summed (no prefix sums: see the kernel).
            passes = (cen - va[: m - w]) <= (va[w:] - cen)
            passes = torch.cat([passes, torch.ones_like(passes[:1])])
            start = passes.to(torch.int8).argmax(0, keepdim=True)
            window = start + torch.arange(w, device=va.device).unsqueeze(1)
            sums = va.gather(0, window).sum(0)
            res = sums / w
        out[s:e] = res.to(out.dtype)
    return out


# --- Gram matrix ---------------------------------------------------------------------------------


def gram(X: torch.Tensor, rows: np.ndarray) -> np.ndarray:
    """Symmetric (m, m) float64 Gram matrix of the kept rows (host numpy: it is m^2 scalars)."""
    m = len(rows)
    d = X.shape[1]
    if compiled(X):
        m4 = (m + 3) // 4 * 4
        Xn, B = _np(X), max(64, min(512, 8192 // m4 // 16 * 16))
        parts: list[np.ndarray] = []

        def call(lo: int, hi: int) -> None:
            G = np.zeros((m4, m4))
            K.gram_kernel(Xn, rows, lo, hi, G, B)
            parts.append(G)

        _run(call, d, B, m)
        G = np.sum(parts, axis=0)[:m, :m]
    else:
        idx = torch.as_tensor(rows, device=X.device)
        Gt = torch.zeros(m, m, dtype=torch.float64, device=X.device)
        chunk = _torch_chunk(X, m)
        for s in range(0, d, chunk):
            c = X[:, s : min(d, s + chunk)].index_select(0, idx).to(torch.float64)
            Gt.addmm_(c, c.T)
        G = Gt.cpu().numpy()
    upper = np.triu(G)
    full: np.ndarray = upper + np.triu(upper, 1).T
    return full


def sqdist_from_gram(G: np.ndarray) -> np.ndarray:
    """Pairwise squared distances ||x_i - x_j||^2 = G_ii + G_jj - 2 G_ij, clamped at 0."""
    diag = np.diag(G)
    D = diag[:, None] + diag[None, :] - 2.0 * G
    np.maximum(D, 0.0, out=D)
    np.fill_diagonal(D, 0.0)
    return D


# --- weighted sums and distances to a vector -----------------------------------------------------


def weighted_sum(X: torch.Tensor, rows: np.ndarray, weights: np.ndarray, out: torch.Tensor) -> torch.Tensor:
    """out = sum_j weights[j] * X[rows[j]] (rows with weight 0 are not read)."""
    d = X.shape[1]
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if compiled(X):
        Xn, on = _np(X), _np(out)
        B = 2048
        _run(lambda lo, hi: K.weighted_sum_kernel(Xn, rows, weights, lo, hi, on, B), d, B, int(np.count_nonzero(weights)))
        return out
    acc = torch.zeros(d, dtype=_acc_dtype(X), device=X.device)
    for r, wt in zip(rows.tolist(), weights.tolist(), strict=True):
        if wt != 0.0:
            acc.add_(X[r].to(acc.dtype), alpha=wt)
    out.copy_(acc)
    return out


def sqnorms(X: torch.Tensor, rows: np.ndarray) -> np.ndarray:
    """(m,) float64 squared norms of the kept rows."""
    return sqdist(X, rows, torch.zeros(X.shape[1], dtype=X.dtype, device=X.device))


def sqdist(X: torch.Tensor, rows: np.ndarray, center: torch.Tensor) -> np.ndarray:
    """(m,) float64 squared distances from each kept row to `center`."""
    d = X.shape[1]
    m = len(rows)
    if compiled(X) and center.dtype == X.dtype and center.is_contiguous():
        Xn, cn, B = _np(X), _np(center), 4096
        parts: list[np.ndarray] = []
        lock = threading.Lock()

        def call(lo: int, hi: int) -> None:
            acc = np.zeros(m)
            K.sqdist_kernel(Xn, rows, cn, lo, hi, acc, B)
            with lock:
                parts.append(acc)

        _run(call, d, B, m)
        total: np.ndarray = np.sum(parts, axis=0)
        return total
    res = np.empty(m)
    for j, r in enumerate(rows.tolist()):
        res[j] = float(torch.linalg.vector_norm((X[r] - center).to(torch.float64)) ** 2)
    return res
