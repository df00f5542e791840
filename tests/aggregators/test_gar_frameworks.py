"""TensorFlow tensors: same rules, same results as torch, TF tensors back (through DLPack)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from garfield.aggregators import aggregate, names

tf = pytest.importorskip("tensorflow")


def setting(name: str) -> tuple[int, int]:
    return {"krum": (9, 2), "multi-krum": (9, 2), "bulyan": (11, 2)}.get(name, (7, 2))


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tensorflow_matches_torch(name, dtype):
    n, f = setting(name)
    X = np.random.default_rng(0).normal(size=(n, 1000)).astype(dtype)
    params = {"seed": 5} if name == "condense" else {}
    ref = aggregate(name, torch.from_numpy(X.copy()), f, **params)
    out = aggregate(name, tf.constant(X), f, **params)
    assert isinstance(out, tf.Tensor) and out.dtype.name == dtype and out.shape == (1000,)
    assert np.allclose(out.numpy(), ref.numpy(), atol=1e-6)
    listed = aggregate(name, [tf.constant(row) for row in X], f, **params)
    assert isinstance(listed, tf.Tensor) and np.allclose(listed.numpy(), ref.numpy(), atol=1e-6)


def test_tensorflow_tensors_cross_without_copies():
    # DLPack hands torch the TensorFlow buffer itself (two views share one address), and the
    # result goes back the same way (the TF result aliases the torch output).
    from garfield.aggregators._bridge import as_matrix

    t = tf.constant(np.arange(4096, dtype=np.float32).reshape(4, 1024))
    X, back = as_matrix(t)
    Y, _ = as_matrix(t)
    assert X.shape == (4, 1024) and X.dtype == torch.float32
    assert X.data_ptr() == Y.data_ptr()
    res = X[0].clone()
    out = back(res)
    assert isinstance(out, tf.Tensor)
    again = torch.utils.dlpack.from_dlpack(tf.experimental.dlpack.to_dlpack(out))
    assert again.data_ptr() == res.data_ptr()


def test_tensorflow_non_finite_rows_follow_the_policy():
    X = np.random.default_rng(1).normal(size=(7, 50)).astype("float32")
    X[3, 0] = np.nan
    out = aggregate("krum", tf.constant(X), 2)
    assert np.isfinite(out.numpy()).all()
