"""What one framework contributes to the runtime: the `FrameworkPlugin` interface.

Everything that differs between PyTorch and TensorFlow outside the adapters themselves (importing
the framework with an error that says how to install it, seeding it, sizing its threads, building
its adapter, what the local launcher may warm before forking) is a method or attribute here, so
callers ask the job's plugin instead of comparing the framework's name. Plugins are listed in
:mod:`garfield.adapters.plugins`, one small module each, in the style of Kubeflow Trainer's plugin
registry. A plugin module imports no framework at module level: the registry is read by every
replica and by the launcher, and a PyTorch job must never import TensorFlow.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations: importing the adapters' base here would be a cycle at run time
    from garfield.adapters.base import FrameworkAdapter
    from garfield.task import Task


class AdapterError(RuntimeError):
    """The framework is unknown or not installed."""


class FrameworkPlugin(ABC):
    """One framework, as the runtime sees it before and around its adapter."""

    name: str  # the value of spec.framework
    package: str  # what must be installed, as users know it ("torch", "TensorFlow")
    install_hint: str  # how to install it, quoted by `check`'s error
    # Whether the local launcher's fork server may import and warm the job's task before forking
    # replicas (False when the framework starts threads at import, which do not survive a fork).
    warm_task_before_fork: bool

    @abstractmethod
    def check(self) -> Any:
        """Import the framework (once) and return its module, or raise AdapterError naming
        `install_hint`. Called before the user's task is imported."""

    @abstractmethod
    def configure_threads(self) -> None:
        """Size the framework's thread pools for one replica process, before any of its ops run."""

    @abstractmethod
    def seed(self, seed: int) -> None:
        """Seed the framework's own random generators (Python's and NumPy's are seeded by the caller)."""

    @abstractmethod
    def create_adapter(self, task: Task, spec: Any, role: str, index: int) -> FrameworkAdapter:
        """The adapter of this framework for one replica (`role`, `index`) of a job with `spec`."""

    def missing(self, exc: BaseException) -> AdapterError:
        """The error `check` raises when the framework cannot be imported."""
        return AdapterError(f"framework {self.name!r} needs {self.package}, which is not installed here: {self.install_hint}")
