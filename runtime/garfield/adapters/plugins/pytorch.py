"""The PyTorch plugin: torch is a core dependency, so `check` fails only in a broken install."""

from __future__ import annotations

import os
from typing import Any

from garfield.adapters.base import FrameworkAdapter
from garfield.adapters.cpus import usable_cpus
from garfield.adapters.plugin import FrameworkPlugin
from garfield.task import Task


class PyTorchPlugin(FrameworkPlugin):
    name = "pytorch"
    package = "torch"
    install_hint = "pip install garfield (torch is one of its dependencies)"
    warm_task_before_fork = True  # torch starts no threads at import: the fork server warms the task once

    def check(self) -> Any:
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - torch is a core dependency
            raise self.missing(exc) from exc
        return torch

    def configure_threads(self) -> None:
        """Intra-op threads = the CPUs this process may use, unless OMP_NUM_THREADS says otherwise
        (the local launcher sets 1 when many replicas share few cores)."""
        if not os.environ.get("OMP_NUM_THREADS"):
            self.check().set_num_threads(usable_cpus())

    def seed(self, seed: int) -> None:
        self.check().manual_seed(seed)

    def create_adapter(self, task: Task, spec: Any, role: str, index: int) -> FrameworkAdapter:
        self.check()
        from garfield.adapters.pytorch import TorchAdapter

        return TorchAdapter(task, spec, role, index)


PLUGIN = PyTorchPlugin()
