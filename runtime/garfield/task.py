"""What a user's entry point returns: their own model, loss, optimizer and data, unchanged.

Garfield never asks for a subclass or a registry entry. The entry point named in
`spec.task.entrypoint` ('package.module:function') is called with `spec.task.args` as keyword
arguments and returns a :class:`Task` or a mapping with the same keys.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping


@dataclass
class Task:
    """The user's training objects.

    model: a torch ``nn.Module``, a Keras model or a ``tf.Module`` with trainable variables.
    loss: in the model's framework's own convention: ``loss(outputs, targets)`` (PyTorch) or
        ``loss(y_true, y_pred)`` (a Keras loss, function or loss name, as given to ``model.compile``).
    optimizer: an optimizer instance, or a factory called with the model's parameters
        (PyTorch) / with no argument (Keras) that returns one.
    train: training data: a Dataset or DataLoader (PyTorch), a ``tf.data.Dataset`` or an
        ``(inputs, targets)`` pair of arrays. Each worker draws its own shuffled batches.
    test: held-out data of the same kinds, used by servers for accuracy; optional.
    """

    model: Any
    loss: Callable[..., Any]
    optimizer: Any
    train: Any
    test: Any | None = None


_KEYS = ("model", "loss", "optimizer", "train", "test")


class TaskError(RuntimeError):
    """The entry point could not be imported, called, or returned something unusable."""


def as_task(value: Any, entrypoint: str = "") -> Task:
    if isinstance(value, Task):
        return value
    if isinstance(value, Mapping):
        missing = [k for k in _KEYS[:4] if k not in value]
        unknown = [k for k in value if k not in _KEYS]
        if missing or unknown:
            raise TaskError(f"{entrypoint}: the returned mapping lacks {missing} / has unknown keys {unknown}; "
                            f"expected {', '.join(_KEYS)}")
        return Task(**dict(value))
    raise TaskError(f"{entrypoint}: returned {type(value).__name__}; expected garfield.Task or a mapping with {', '.join(_KEYS)}")


def load_task(entrypoint: str, args: Mapping[str, Any] | None = None) -> Task:
    """Import 'module:function', call it with `args`, and check what it returns."""
    module_name, _, func_name = entrypoint.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskError(f"cannot import the task module {module_name!r}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise TaskError(f"{module_name!r} has no callable {func_name!r}")
    try:
        value = func(**dict(args or {}))
    except TypeError as exc:
        raise TaskError(f"{entrypoint}{tuple(dict(args or {}))}: {exc}") from exc
    return as_task(value, entrypoint)
