"""Compiled CPU kernels (numba) behind the rules; torch paths in `_torch_ops` do the same on CUDA.

Every kernel works on a range [lo, hi) of coordinates of the (n, d) input and on a subset `rows`
of its rows (the rows the non-finite policy kept), so that no rule ever copies the input: the CPU
runner (`_cpu.run`) splits the coordinates among threads (the kernels release the GIL) and each
thread streams its range block by block through an L1-sized buffer. Reading the 100 MB of a
25 x 1e6 float32 input once is about 4 ms on this machine; the kernels are built to stay close to
that: one pass, branch-free inner loops over contiguous memory that LLVM vectorises.

Conventions match the docstrings in `rules.py`; accumulations are in float64.
"""

from __future__ import annotations

import os
from typing import Any


def _default_cache_dir() -> str:
    """Where compiled kernels are kept across processes and runs, unless NUMBA_CACHE_DIR says otherwise:
    ``$GARFIELD_CACHE_DIR/numba``, else ``$XDG_CACHE_HOME/garfield/numba``, else ``~/.cache/garfield/numba``.

    Why not numba's default (``__pycache__`` next to this file): an installed package's folder is
    often read-only (images, system installs), and then every replica recompiles for seconds."""
    root = os.environ.get("GARFIELD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "garfield")
    return os.path.join(root, "numba")


os.environ.setdefault("NUMBA_CACHE_DIR", _default_cache_dir())

import numba  # noqa: E402 - after NUMBA_CACHE_DIR
import numpy as np  # noqa: E402

# numba may have been imported before the default was set (numba.core.config is unannotated: the ignore)
numba.core.config.reload_config()  # type: ignore[no-untyped-call]


def _disk_cache_usable() -> bool:
    """numba refuses `cache=True` (RuntimeError at decoration) where no cache directory is
    writable, e.g. a read-only image without NUMBA_CACHE_DIR: compile in memory there instead."""
    try:
        numba.njit(cache=True)(lambda: 0)
    except RuntimeError:
        return False
    return True


_CACHE = _disk_cache_usable()
# No "nnan"/"ninf": the Gram kernel must let NaN and inf through so the policy can see them.
_JIT: dict[str, Any] = dict(nogil=True, fastmath={"nsz", "arcp", "contract", "reassoc"}, cache=_CACHE, error_model="numpy")

MEDIAN, TRIMMED, WINDOW_MEDIAN, WINDOW_TRIMMED = 0, 1, 2, 3


@numba.njit(**_JIT)
def coordinate_kernel(X, rows, net, mode, f, w, lo, hi, out, B, poison):  # pragma: no cover - compiled
    """Per coordinate of [lo, hi): sort the kept rows' values with the network `net`, then
    MEDIAN: mean of the two middle values; TRIMMED: mean of positions f..m-f-1;
    WINDOW_MEDIAN / WINDOW_TRIMMED: mean of the w values closest to the median / to the f-trimmed
    mean (the w closest values form a contiguous window of the sorted values; of two values at the
    same distance, the smaller one is taken).
    poison[r] accumulates x - x over row r's values: NaN unless all of them are finite, which
    gives the non-finite check for free while the block is loaded."""
    m = rows.shape[0]
    buf = np.empty((m, B), X.dtype)
    acc = np.empty(B, np.float64)
    cen = np.empty(B, np.float64)
    start = np.empty(B, np.int64)
    i0 = (m - 1) // 2
    i1 = m // 2
    ncomp = net.shape[0]
    for b0 in range(lo, hi, B):
        bw = min(B, hi - b0)
        # Inner loops index 1-D row views: 2-D indexing in the loop body keeps LLVM from
        # vectorising (measured 3x slower).
        for r in range(m):
            src = X[rows[r], b0 : b0 + bw]
            dst = buf[r]
            bad = 0.0
            for k in range(bw):
                v = src[k]
                dst[k] = v
                bad += v - v
            poison[r] += bad
        for c in range(ncomp):
            ra = buf[net[c, 0]]
            rb = buf[net[c, 1]]
            for k in range(bw):
                x = ra[k]
                y = rb[k]
                ra[k] = x if x < y else y
                rb[k] = y if x < y else x
        dst = out[b0 : b0 + bw]
        # The centre: the median (MEDIAN, WINDOW_MEDIAN) or the f-trimmed mean (TRIMMED,
        # WINDOW_TRIMMED); the plain modes return it, the window modes average around it.
        if mode == MEDIAN or mode == WINDOW_MEDIAN:
            lo_row = buf[i0]
            hi_row = buf[i1]
            for k in range(bw):
                cen[k] = 0.5 * lo_row[k] + 0.5 * hi_row[k]
        else:
            for k in range(bw):
                cen[k] = 0.0
            for r in range(f, m - f):
                row = buf[r]
                for k in range(bw):
                    cen[k] += row[k]
            inv = 1.0 / (m - 2 * f)
            for k in range(bw):
                cen[k] *= inv
        if mode == MEDIAN or mode == TRIMMED:
            for k in range(bw):
                dst[k] = cen[k]
        else:
            # The w values closest to c form the window [s, s+w) of the sorted values for the
            # first s whose left end is no farther from c than the value just past its right end
            # (c - v[s] <= v[s+w] - c; that test only turns from false to true as s grows), else
            # the last window. Equal distances keep the smaller value. Going down from the last
            # window, the smallest s that passes is the one left in start.
            for k in range(bw):
                start[k] = m - w
            for s in range(m - w - 1, -1, -1):
                first = buf[s]
                beyond = buf[s + w]
                for k in range(bw):
                    c0 = cen[k]
                    start[k] = s if c0 - first[k] <= beyond[k] - c0 else start[k]
            # The window's own values are summed, not a difference of prefix sums: one Byzantine
            # -1e30 at the bottom would cancel every honest value out of a running sum.
            for k in range(bw):
                acc[k] = 0.0
            for r in range(m):
                row = buf[r]
                for k in range(bw):
                    inside = start[k] <= r and r < start[k] + w
                    acc[k] += row[k] if inside else 0.0
            inv = 1.0 / w
            for k in range(bw):
                dst[k] = acc[k] * inv


@numba.njit(**_JIT)
def gram_kernel(X, rows, lo, hi, G, B):  # pragma: no cover - compiled
    """G[i, j] += sum over [lo, hi) of X[rows[i]] * X[rows[j]] for j >= i (upper triangle), in
    float64: products of float32 inputs are exact, so distances between nearly equal models keep
    their digits (a float32 GEMM loses them to cancellation). G is (m4, m4), m4 = m rounded up to
    a multiple of 4: 4x4 register blocks (16 accumulators, 8 loads per 16 multiply-adds) over an
    L1-sized float64 copy of the block, padded with zero rows."""
    m = rows.shape[0]
    m4 = G.shape[0]
    buf = np.zeros((m4, B), np.float64)
    for b0 in range(lo, hi, B):
        bw = min(B, hi - b0)
        for r in range(m):
            src = X[rows[r], b0 : b0 + bw]
            dst = buf[r]
            for k in range(bw):
                dst[k] = src[k]
        for i in range(0, m4, 4):
            A0 = buf[i]
            A1 = buf[i + 1]
            A2 = buf[i + 2]
            A3 = buf[i + 3]
            for j in range(i, m4, 4):
                C0 = buf[j]
                C1 = buf[j + 1]
                C2 = buf[j + 2]
                C3 = buf[j + 3]
                s00 = s01 = s02 = s03 = 0.0
                s10 = s11 = s12 = s13 = 0.0
                s20 = s21 = s22 = s23 = 0.0
                s30 = s31 = s32 = s33 = 0.0
                for k in range(bw):
                    a0 = A0[k]
                    a1 = A1[k]
                    a2 = A2[k]
                    a3 = A3[k]
                    c0 = C0[k]
                    c1 = C1[k]
                    c2 = C2[k]
                    c3 = C3[k]
                    s00 += a0 * c0
                    s01 += a0 * c1
                    s02 += a0 * c2
                    s03 += a0 * c3
                    s10 += a1 * c0
                    s11 += a1 * c1
                    s12 += a1 * c2
                    s13 += a1 * c3
                    s20 += a2 * c0
                    s21 += a2 * c1
                    s22 += a2 * c2
                    s23 += a2 * c3
                    s30 += a3 * c0
                    s31 += a3 * c1
                    s32 += a3 * c2
                    s33 += a3 * c3
                G[i, j] += s00
                G[i, j + 1] += s01
                G[i, j + 2] += s02
                G[i, j + 3] += s03
                G[i + 1, j] += s10
                G[i + 1, j + 1] += s11
                G[i + 1, j + 2] += s12
                G[i + 1, j + 3] += s13
                G[i + 2, j] += s20
                G[i + 2, j + 1] += s21
                G[i + 2, j + 2] += s22
                G[i + 2, j + 3] += s23
                G[i + 3, j] += s30
                G[i + 3, j + 1] += s31
                G[i + 3, j + 2] += s32
                G[i + 3, j + 3] += s33


@numba.njit(**_JIT)
def weighted_sum_kernel(X, rows, weights, lo, hi, out, B):  # pragma: no cover - compiled
    """out[lo:hi] = sum_j weights[j] * X[rows[j], lo:hi], accumulated in float64."""
    m = rows.shape[0]
    acc = np.empty(B, np.float64)
    for b0 in range(lo, hi, B):
        bw = min(B, hi - b0)
        for k in range(bw):
            acc[k] = 0.0
        for j in range(m):
            wj = weights[j]
            if wj == 0.0:
                continue
            src = X[rows[j], b0 : b0 + bw]
            for k in range(bw):
                acc[k] += wj * src[k]
        dst = out[b0 : b0 + bw]
        for k in range(bw):
            dst[k] = acc[k]


@numba.njit(**_JIT)
def sqdist_kernel(X, rows, center, lo, hi, acc, B):  # pragma: no cover - compiled
    """acc[j] += squared distance between X[rows[j], lo:hi] and center[lo:hi], in float64."""
    m = rows.shape[0]
    for b0 in range(lo, hi, B):
        bw = min(B, hi - b0)
        cen = center[b0 : b0 + bw]
        for j in range(m):
            src = X[rows[j], b0 : b0 + bw]
            s = 0.0
            for k in range(bw):
                t = np.float64(src[k]) - np.float64(cen[k])
                s += t * t
            acc[j] += s


# --- minimum-diameter subset search (MDA) ------------------------------------------------------
# Bitsets of vertices are int64 words holding 63 vertices each (the sign bit stays clear, so
# every operation stays in signed 64-bit integers).
_BITS = 63


@numba.njit(cache=_CACHE)
def _popcount(x):  # pragma: no cover - compiled
    x = x - ((x >> 1) & 0x5555555555555555)
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
    return (x * 0x0101010101010101) >> 56


@numba.njit(cache=_CACHE)
def _count(s, W):  # pragma: no cover - compiled
    total = 0
    for w in range(W):
        total += _popcount(s[w])
    return total


@numba.njit(cache=_CACHE)
def _color_bound(cand, adj, W, need, U, Q):  # pragma: no cover - compiled
    """Greedy colouring of the candidates: a clique has at most one vertex per colour class, so
    the number of classes bounds the clique size. Stops counting at `need` (no pruning then)."""
    for w in range(W):
        U[w] = cand[w]
    colors = 0
    while _count(U, W) > 0:
        colors += 1
        if colors >= need:
            return colors
        for w in range(W):
            Q[w] = U[w]
        while True:
            v = -1
            for w in range(W):
                if Q[w] != 0:
                    low = Q[w] & -Q[w]
                    v = w * _BITS + _popcount(low - 1)
                    break
            if v < 0:
                break
            vw = v // _BITS
            bit = np.int64(1) << (v % _BITS)
            Q[vw] &= ~bit
            U[vw] &= ~bit
            for w in range(W):
                Q[w] &= ~adj[v, w]
    return colors


@numba.njit(cache=_CACHE)
def _find_clique(D, threshold, k, chosen):  # pragma: no cover - compiled
    """Lexicographically smallest set of k vertices whose pairwise D are all <= threshold
    (a k-clique of the threshold graph), written to `chosen`; returns False if none exists.

    Depth-first over vertices in increasing index order, each branch keeping only higher-index
    candidates adjacent to everything chosen, pruned by candidate count and colouring bound."""
    m = D.shape[0]
    W = (m + _BITS - 1) // _BITS
    adj = np.zeros((m, W), np.int64)
    for i in range(m):
        for j in range(m):
            if i != j and D[i, j] <= threshold:
                adj[i, j // _BITS] |= np.int64(1) << (j % _BITS)
    cand = np.zeros((k + 1, W), np.int64)
    for v in range(m):
        cand[0, v // _BITS] |= np.int64(1) << (v % _BITS)
    U = np.empty(W, np.int64)
    Q = np.empty(W, np.int64)
    fresh = True
    depth = 0
    while True:
        if depth == k:
            return True
        need = k - depth
        if _count(cand[depth], W) < need or (fresh and _color_bound(cand[depth], adj, W, need, U, Q) < need):
            depth -= 1
            fresh = False
            if depth < 0:
                return False
            continue
        v = -1
        for w in range(W):
            x = cand[depth, w]
            if x != 0:
                low = x & -x
                v = w * _BITS + _popcount(low - 1)
                cand[depth, w] = x & ~low
                break
        chosen[depth] = v
        for w in range(W):
            cand[depth + 1, w] = cand[depth, w] & adj[v, w]
        depth += 1
        fresh = True


@numba.njit(cache=_CACHE)
def min_diameter_subset(D, k):  # pragma: no cover - compiled
    """Indices (sorted) of the lexicographically smallest k-subset of minimum diameter under the
    symmetric distance matrix D (squared or plain: only the order of distances matters).

    The optimal diameter is one of the pairwise distances. It is bracketed between a lower bound
    (every member has k-1 others within the diameter, so it is at least the smallest (k-1)-th
    nearest-neighbour distance) and the diameter of the best "vertex plus its k-1 nearest"
    set, then found by binary search over the distinct distances in between, each step asking
    whether the threshold graph has a k-clique."""
    m = D.shape[0]
    chosen = np.empty(k, np.int64)
    if k <= 1:
        chosen[:k] = 0
        return chosen
    lower = np.inf
    upper = np.inf
    for i in range(m):
        order = np.argsort(D[i])  # i itself first (distance 0) unless duplicates precede it
        near = np.empty(k, np.int64)
        near[0] = i
        c = 1
        for t in range(m):
            j = order[t]
            if j != i and c < k:
                near[c] = j
                c += 1
        kth = D[i, near[k - 1]]
        if kth < lower:
            lower = kth
        diam = 0.0
        for a in range(k):
            for b in range(a + 1, k):
                if D[near[a], near[b]] > diam:
                    diam = D[near[a], near[b]]
        if diam < upper:
            upper = diam
    cands = np.empty(m * (m - 1) // 2, np.float64)
    c = 0
    for i in range(m):
        for j in range(i + 1, m):
            v = D[i, j]
            if v >= lower and v <= upper:
                cands[c] = v
                c += 1
    cands = np.unique(cands[:c])
    lo = 0
    hi = cands.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _find_clique(D, cands[mid], k, chosen):
            hi = mid
        else:
            lo = mid + 1
    _find_clique(D, cands[hi], k, chosen)
    return chosen


# --- iterations in the span of the inputs (n x n work only) -------------------------------------
#
# Products are written as loops, not `@`: numba's `@` calls a BLAS through SciPy, so it would make
# SciPy a dependency and its import (~0.4 s, by numba at every process start) part of start-up,
# for n x n products that take microseconds anyway.


@numba.njit(cache=_CACHE)
def _matvec(G, x):  # pragma: no cover - compiled
    """G @ x for a small square G."""
    m = G.shape[0]
    out = np.zeros(m)
    for i in range(m):
        acc = 0.0
        for j in range(m):
            acc += G[i, j] * x[j]
        out[i] = acc
    return out


@numba.njit(cache=_CACHE)
def _dot(x, y):  # pragma: no cover - compiled
    """x @ y for two vectors."""
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i] * y[i]
    return acc


@numba.njit(cache=_CACHE)
def _distances_to_mix(G, alpha):  # pragma: no cover - compiled
    """||x_i - v|| for every input i, where v = sum_j alpha_j x_j, from the Gram matrix alone:
    ||x_i - v||^2 = G_ii - 2 (G alpha)_i + alpha' G alpha (rounding below 0 reads as 0)."""
    m = G.shape[0]
    Ga = _matvec(G, alpha)
    aGa = _dot(alpha, Ga)
    dist = np.empty(m)
    for i in range(m):
        v = G[i, i] - 2.0 * Ga[i] + aGa
        dist[i] = np.sqrt(v) if v > 0.0 else 0.0
    return dist


@numba.njit(cache=_CACHE)
def weiszfeld(G, tolerance, max_iterations, smoothing):  # pragma: no cover - compiled
    """Weiszfeld iterations for the geometric median z = sum_i alpha_i x_i, run on the Gram
    matrix G alone: ||x_i - z||^2 = G_ii - 2 (G alpha)_i + alpha' G alpha. Starts at the mean.
    Stops when the step ||z_{t+1} - z_t|| is at most `tolerance` times the mean distance to z_t
    (scale- and translation-free). Distances below `smoothing` times the mean distance are
    raised to it (smoothed Weiszfeld), so an iterate landing on an input is not a 0/0.
    Returns (alpha, iterations, converged)."""
    m = G.shape[0]
    alpha = np.full(m, 1.0 / m)
    for it in range(max_iterations):
        dist = _distances_to_mix(G, alpha)
        scale = dist.mean()
        if scale == 0.0:
            return alpha, it, True
        floor = smoothing * scale
        wts = np.empty(m)
        for i in range(m):
            wts[i] = 1.0 / (dist[i] if dist[i] > floor else floor)
        new = wts / wts.sum()
        step = new - alpha
        s2 = _dot(step, _matvec(G, step))
        alpha = new
        if np.sqrt(s2 if s2 > 0.0 else 0.0) <= tolerance * scale:
            return alpha, it + 1, True
    return alpha, max_iterations, False


@numba.njit(cache=_CACHE)
def centered_clipping(G, tau, iterations):  # pragma: no cover - compiled
    """Centered clipping v <- v + (1/m) sum_i (x_i - v) min(1, tau / ||x_i - v||) from v = 0,
    run on the Gram matrix: v stays sum_i alpha_i x_i. Returns alpha."""
    m = G.shape[0]
    alpha = np.zeros(m)
    for _ in range(iterations):
        dist = _distances_to_mix(G, alpha)
        c = np.empty(m)
        for i in range(m):
            c[i] = 1.0 if dist[i] <= tau else tau / dist[i]
        alpha = alpha * (1.0 - c.sum() / m) + c / m
    return alpha
