"""The TensorFlow plugin: an optional dependency, imported only by TensorFlow jobs, quietly and
with its thread pools sized for this process, before the user's task imports Keras."""

from __future__ import annotations

from typing import Any

from garfield.adapters.base import FrameworkAdapter
from garfield.adapters.plugin import FrameworkPlugin
from garfield.task import Task


class TensorFlowPlugin(FrameworkPlugin):
    name = "tensorflow"
    package = "TensorFlow"
    install_hint = "pip install 'garfield[tensorflow]' (tensorflow-cpu) or tensorflow[and-cuda]"
    warm_task_before_fork = False  # TensorFlow starts threads at import, and they do not survive a fork

    def check(self) -> Any:
        from garfield.adapters.tensorflow import import_tensorflow

        try:
            return import_tensorflow()
        except ImportError as exc:
            raise self.missing(exc) from exc

    def configure_threads(self) -> None:
        """Nothing to do here: TensorFlow's pools can only be sized before its runtime starts, so
        `check` (the import) sizes them, and `seed` is the first to call it."""

    def seed(self, seed: int) -> None:
        self.check().random.set_seed(seed)  # fails here, before the task imports Keras

    def create_adapter(self, task: Task, spec: Any, role: str, index: int) -> FrameworkAdapter:
        self.check()
        from garfield.adapters.tensorflow import TensorFlowAdapter

        return TensorFlowAdapter(task, spec, role, index)


PLUGIN = TensorFlowPlugin()
