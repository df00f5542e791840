"""Framework adapters: the user's task wrapped as flat vectors on a device.

``create(framework, task, spec, role, index)`` is the one constructor the runtime calls. The
TensorFlow adapter is imported only for TensorFlow jobs, so PyTorch jobs never pay TensorFlow's
import time and run where it is not installed.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np

from garfield.adapters.base import FrameworkAdapter
from garfield.adapters.cpus import usable_cpus
from garfield.task import Task

FRAMEWORKS = ("pytorch", "tensorflow")


class AdapterError(RuntimeError):
    """The framework is unknown or not installed."""


def create(framework: str, task: Task, spec: Any, role: str, index: int) -> FrameworkAdapter:
    """The adapter of `framework` for this replica (`role`, `index`) of a job with `spec`."""
    if framework == "pytorch":
        try:
            from garfield.adapters.pytorch import TorchAdapter
        except ImportError as exc:  # pragma: no cover - torch is a core dependency
            raise AdapterError(f"framework 'pytorch' needs torch: {exc}") from exc
        return TorchAdapter(task, spec, role, index)
    if framework == "tensorflow":
        _import_tensorflow()
        from garfield.adapters.tensorflow import TensorFlowAdapter

        return TensorFlowAdapter(task, spec, role, index)
    raise AdapterError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}")


def _import_tensorflow() -> Any:
    """TensorFlow, imported quietly with thread pools sized for this process (before the user's
    task imports Keras), or AdapterError saying how to install it."""
    from garfield.adapters.tensorflow import import_tensorflow

    try:
        return import_tensorflow()
    except ImportError as exc:
        raise AdapterError("framework 'tensorflow' needs TensorFlow, which is not installed here: "
                           "pip install 'garfield[tensorflow]' (tensorflow-cpu) or tensorflow[and-cuda]") from exc


def seed_everything(framework: str, seed: int) -> None:
    """Seed Python, NumPy and the framework before the user's task builds its model, so every
    replica starts from the same parameters unless the task seeds itself."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if framework == "pytorch":
        import torch

        torch.manual_seed(seed)
    elif framework == "tensorflow":
        _import_tensorflow().random.set_seed(seed)  # fails here, before the task imports Keras


def configure_threads(framework: str) -> None:
    """One replica process: PyTorch intra-op threads = the CPUs it may use, unless OMP_NUM_THREADS
    says otherwise (the local launcher sets 1 when many replicas share few cores). TensorFlow's
    adapter configures its own threads."""
    if framework == "pytorch" and not os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(usable_cpus())


__all__ = ["FRAMEWORKS", "AdapterError", "FrameworkAdapter", "configure_threads", "create", "seed_everything",
           "usable_cpus"]
