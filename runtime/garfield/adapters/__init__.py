"""Framework adapters: the user's task wrapped as flat vectors on a device.

``create(framework, task, spec, role, index)`` is the one constructor the runtime calls. What
differs per framework is its plugin's (:mod:`garfield.adapters.plugins`); the TensorFlow adapter is
imported only for TensorFlow jobs, so PyTorch jobs never pay TensorFlow's import time and run
where it is not installed.
"""

from __future__ import annotations

import random
from typing import Any

from garfield.adapters.base import FrameworkAdapter
from garfield.adapters.cpus import usable_cpus
from garfield.adapters.plugins import FRAMEWORKS, AdapterError, plugin
from garfield.task import Task


def create(framework: str, task: Task, spec: Any, role: str, index: int) -> FrameworkAdapter:
    """The adapter of `framework` for this replica (`role`, `index`) of a job with `spec`."""
    return plugin(framework).create_adapter(task, spec, role, index)


def seed_everything(framework: str, seed: int) -> None:
    """Seed Python, NumPy and the framework before the user's task builds its model, so every
    replica starts from the same parameters unless the task seeds itself."""
    import numpy as np  # here, so that reading the registry (the launcher does) imports no NumPy

    random.seed(seed)
    np.random.seed(seed % 2**32)
    plugin(framework).seed(seed)


def configure_threads(framework: str) -> None:
    """Size the framework's thread pools for one replica process (see each plugin's `configure_threads`)."""
    plugin(framework).configure_threads()


__all__ = ["FRAMEWORKS", "AdapterError", "FrameworkAdapter", "configure_threads", "create", "seed_everything",
           "usable_cpus"]
