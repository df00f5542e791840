"""Sorting networks for the coordinate-wise rules (pure Python, cached).

A sorting network is a fixed list of compare-exchange pairs (i, j), i < j: after applying them in
order to any n values, position 0 holds the smallest and n-1 the largest. Because the sequence does
not depend on the data, the CPU kernel applies each comparator to a whole block of coordinates at
once (a branch-free min/max over contiguous memory that the compiler turns into SIMD), which is
what makes coordinate-wise selection several times faster than per-coordinate nth_element or a
full sort. Batcher's odd-even merge sort works for any n: build it for the next power of two and
drop the comparators that touch padding (padding is +inf, so those comparators never swap).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def batcher(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort network for n inputs (O(n log^2 n) comparators)."""
    if n < 1:
        raise ValueError(f"a sorting network needs at least one input, got n={n}")
    size = 1
    while size < n:
        size *= 2
    comps: list[tuple[int, int]] = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        comps.append((a, b))
            k //= 2
        p *= 2
    return comps


def prune(comps: list[tuple[int, int]], needed: set[int]) -> list[tuple[int, int]]:
    """Keep only the comparators that can influence the output positions in `needed`.

    Walking backwards, a comparator matters if one of its outputs is needed; then both its inputs
    become needed. For a median of 25 values this drops about a fifth of the comparators.
    """
    need = set(needed)
    kept: list[tuple[int, int]] = []
    for a, b in reversed(comps):
        if a in need or b in need:
            kept.append((a, b))
            need.add(a)
            need.add(b)
    kept.reverse()
    return kept


@lru_cache(maxsize=256)
def network(n: int, positions: tuple[int, ...] | None = None) -> np.ndarray:
    """(k, 2) int64 array of comparators sorting n values; pruned to `positions` when given."""
    comps = batcher(n)
    if positions is not None:
        comps = prune(comps, set(positions))
    arr = np.array(comps, dtype=np.int64).reshape(-1, 2)
    arr.setflags(write=False)
    return arr
