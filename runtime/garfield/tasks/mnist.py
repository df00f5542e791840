"""MNIST tasks for the examples, written exactly as a user would write their own entry point.

Nothing here knows about Garfield beyond returning a :class:`garfield.task.Task`: an ordinary
``nn.Module``, ``nn.CrossEntropyLoss``, an SGD factory and the shipped MNIST split
(:mod:`garfield.data.mnist`) as ``TensorDataset``s. Job manifests name them as
``garfield.tasks.mnist:mlp`` or ``garfield.tasks.mnist:convnet`` with ``spec.task.args``.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from garfield.data.torchdata import mnist_datasets
from garfield.task import Task


def mlp(hidden: int = 128, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0, seed: int = 1) -> Task:
    """784-`hidden`-10 perceptron with a ReLU: small enough for 11 processes on 2 cores.

    `momentum` is *server-side* optimizer momentum (0 by default: Garfield's worker-side momentum,
    ``spec.training.workerMomentum``, is the robust choice). `seed` fixes the initial weights so
    every replica starts from the same model.
    """
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    train, test = mnist_datasets()
    return Task(
        model=model,
        loss=nn.CrossEntropyLoss(),
        optimizer=partial(torch.optim.SGD, lr=lr, momentum=momentum, weight_decay=weight_decay),
        train=train,
        test=test,
    )


class ConvNet(nn.Module):
    """Two 5x5 convolutions with max-pooling, then two dense layers (the classic MNIST convnet)."""

    def __init__(self, channels: tuple[int, int] = (16, 32), hidden: int = 128) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.features(x))
        return logits


def convnet(channels: tuple[int, int] | list[int] = (16, 32), hidden: int = 128, lr: float = 0.05,
            momentum: float = 0.0, seed: int = 1) -> Task:
    """A small convnet on ``(1, 28, 28)`` images; same loss, optimizer factory and split as :func:`mlp`."""
    torch.manual_seed(seed)
    model = ConvNet(tuple(channels), hidden)  # type: ignore[arg-type]
    train, test = mnist_datasets(image=True)
    return Task(
        model=model,
        loss=nn.CrossEntropyLoss(),
        optimizer=partial(torch.optim.SGD, lr=lr, momentum=momentum),
        train=train,
        test=test,
    )
