"""PyTorch views of the shipped MNIST split: ordinary ``TensorDataset``s a user's task returns."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from garfield.data import mnist


def _dataset(x: np.ndarray, y: np.ndarray, shape: tuple[int, ...]) -> TensorDataset:
    # torch.from_numpy refuses read-only arrays without a warning-free path; copy once per process.
    inputs = torch.from_numpy(np.array(x, dtype=np.float32)).reshape(-1, *shape)
    return TensorDataset(inputs, torch.from_numpy(np.array(y, dtype=np.int64)))


def mnist_datasets(image: bool = False) -> tuple[TensorDataset, TensorDataset]:
    """``(train, test)``: inputs ``(784,)`` per sample, or ``(1, 28, 28)`` with ``image=True`` (for convnets)."""
    shape = (1, mnist.IMAGE_SIDE, mnist.IMAGE_SIDE) if image else (mnist.FEATURES,)
    x_train, y_train, x_test, y_test = mnist.load()
    return _dataset(x_train, y_train, shape), _dataset(x_test, y_test, shape)
