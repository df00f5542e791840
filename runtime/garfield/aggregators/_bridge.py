"""Framework bridge: any accepted input -> one (n, d) torch tensor on its device, and back.

TensorFlow tensors cross through DLPack, which hands over the same device buffer (no copy, no
trip through host memory on a GPU); numpy arrays are wrapped with `torch.from_numpy` (no copy).
The result goes back the same way, so a caller gets its own framework, device and dtype.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch


def _is_tf(x: Any) -> bool:
    return type(x).__module__.startswith("tensorflow")


def _is_numpy(x: Any) -> bool:
    return type(x).__module__ == "numpy" and hasattr(x, "__array_interface__")


def _tf_to_torch(t: Any) -> torch.Tensor:
    import tensorflow as tf

    return torch.utils.dlpack.from_dlpack(tf.experimental.dlpack.to_dlpack(t))


def _torch_to_tf(t: torch.Tensor) -> Any:
    import tensorflow as tf

    # torch.utils.dlpack re-exports to_dlpack from torch._C without listing it in __all__
    return tf.experimental.dlpack.from_dlpack(torch.utils.dlpack.to_dlpack(t.contiguous()))  # type: ignore[attr-defined]


def as_matrix(gradients: Any) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """Return (X, back): X is an (n, d) torch view of `gradients`, back(result) converts a 1-D
    torch result to the caller's framework. Lists are stacked (one copy, unavoidable)."""
    if isinstance(gradients, (list, tuple)):
        if len(gradients) == 0:
            raise ValueError("nothing to aggregate: got an empty list of vectors")
        first = gradients[0]
        if _is_tf(first):
            import tensorflow as tf

            return as_matrix(tf.stack([tf.reshape(g, [-1]) for g in gradients]))
        if _is_numpy(first):
            import numpy as np

            return as_matrix(np.stack([np.ravel(g) for g in gradients]))
        if not all(isinstance(g, torch.Tensor) for g in gradients):
            raise TypeError("gradients must all be torch tensors, all tf tensors, or all numpy arrays")
        return as_matrix(torch.stack([g.reshape(-1) for g in _same_device(gradients)]))
    if isinstance(gradients, torch.Tensor):
        X, back = gradients, _identity
    elif _is_tf(gradients):
        X, back = _tf_to_torch(gradients), _torch_to_tf
    elif _is_numpy(gradients):
        X, back = torch.from_numpy(gradients), _to_numpy
    else:
        raise TypeError(f"cannot aggregate a {type(gradients).__name__}: expected torch/tf tensors or numpy arrays")
    if X.dim() != 2:
        raise ValueError(f"gradients must be a 2-D (n, d) tensor or a list of 1-D tensors, got shape {tuple(X.shape)}")
    if X.shape[0] == 0:
        raise ValueError("nothing to aggregate: got 0 vectors")
    if not (X.dtype.is_floating_point):
        raise TypeError(f"gradients must be floating point, got {X.dtype}")
    if X.requires_grad:
        X = X.detach()
    return X, back


def _same_device(gradients: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
    dev = gradients[0].device
    for g in gradients:
        if g.device != dev:
            raise ValueError(f"gradients are on different devices ({dev} and {g.device})")
    return gradients


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def _to_numpy(t: torch.Tensor) -> Any:
    return t.numpy()
