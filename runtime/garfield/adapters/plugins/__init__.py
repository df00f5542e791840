"""The framework plugin registry: spec.framework's value -> its `FrameworkPlugin`.

One module per framework, listed here (the Kubeflow Trainer way: the registry names every plugin,
each plugin knows only itself). Import-cheap: no plugin module imports its framework until asked,
so reading the registry costs a PyTorch job no TensorFlow and the launcher no torch. The spec
schema's enum of frameworks cannot import this module (the job model imports no framework, and the
plugins reach their adapters); tests/adapters/test_plugins.py checks that the two agree, and that
every plugin passes :func:`conformance_errors`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, get_type_hints

from garfield.adapters.plugin import AdapterError, FrameworkPlugin
from garfield.adapters.plugins import pytorch, tensorflow

PLUGINS: Mapping[str, FrameworkPlugin] = MappingProxyType({p.name: p for p in (pytorch.PLUGIN, tensorflow.PLUGIN)})
FRAMEWORKS: tuple[str, ...] = tuple(PLUGINS)


def plugin(framework: str) -> FrameworkPlugin:
    """The plugin of `framework`, or AdapterError naming the known ones."""
    try:
        return PLUGINS[framework]
    except KeyError:
        raise AdapterError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}") from None


def conformance_errors(plugins: Mapping[str, object]) -> list[str]:
    """What keeps `plugins` from being a registry: a plugin that is no FrameworkPlugin, is listed
    under another name, or lacks one of the interface's attributes (methods are enforced by the
    ABC, attributes only by this check)."""
    errors = []
    attributes = get_type_hints(FrameworkPlugin)
    for key, candidate in plugins.items():
        if not isinstance(candidate, FrameworkPlugin):
            errors.append(f"{key}: {type(candidate).__name__} is not a FrameworkPlugin")
            continue
        if getattr(candidate, "name", None) != key:
            errors.append(f"{key}: registered under {key!r} but named {getattr(candidate, 'name', None)!r}")
        for attribute, kind in attributes.items():
            value = getattr(candidate, attribute, None)
            if not isinstance(value, kind) or value == "":
                errors.append(f"{key}: {attribute} must be a non-empty {kind.__name__}, got {value!r}")
    return errors


__all__ = ["FRAMEWORKS", "PLUGINS", "AdapterError", "FrameworkPlugin", "conformance_errors", "plugin"]
