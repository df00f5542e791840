"""A task small enough for many nodes on 2 cores: 4 Gaussian blobs in 16 dimensions, a 16-32-4 MLP.

Written like a user's entry point (no Garfield types beyond Task). Chance level is 25%; a few
dozen SGD steps reach > 90%.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.utils.data import TensorDataset

from garfield.task import Task


def blobs(n: int, seed: int, classes: int = 4, dim: int = 16) -> TensorDataset:
    g = torch.Generator().manual_seed(1234)  # the class centres are the same for train and test
    centres = torch.randn(classes, dim, generator=g) * 1.5
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = centres[y] + torch.randn(n, dim, generator=g)
    return TensorDataset(x, y)


def mlp(hidden: int = 32, lr: float = 0.05, seed: int = 7) -> Task:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, 4))
    return Task(model=model, loss=nn.CrossEntropyLoss(), optimizer=partial(torch.optim.SGD, lr=lr),
                train=blobs(2000, 1), test=blobs(500, 2))
