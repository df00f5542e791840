"""The framework plugin registry: every plugin implements the whole FrameworkPlugin interface, the
spec schema offers exactly the registered frameworks, and reading the registry imports no framework."""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import Any

import pytest

from garfield.adapters import FRAMEWORKS, AdapterError, configure_threads, create, seed_everything
from garfield.adapters.plugin import FrameworkPlugin
from garfield.adapters.plugins import PLUGINS, conformance_errors, plugin
from garfield.adapters.plugins.pytorch import PyTorchPlugin
from garfield.spec import schema


def test_every_registered_plugin_implements_the_full_interface() -> None:
    assert PLUGINS and conformance_errors(PLUGINS) == []
    for name, registered in PLUGINS.items():
        cls = type(registered)
        assert not inspect.isabstract(cls), name
        for method in FrameworkPlugin.__abstractmethods__:
            assert getattr(cls, method) is not getattr(FrameworkPlugin, method), (name, method)
        assert plugin(name) is registered


def test_conformance_reports_what_a_plugin_lacks() -> None:
    class Nameless(PyTorchPlugin):
        name = "other"
        install_hint = ""

    errors = conformance_errors({"pytorch": Nameless(), "keras": object()})
    assert any("named 'other'" in e for e in errors), errors
    assert any("install_hint must be a non-empty str" in e for e in errors), errors
    assert any("keras: object is not a FrameworkPlugin" in e for e in errors), errors


def test_the_spec_schema_offers_exactly_the_registered_frameworks() -> None:
    framework = schema.spec_schema()["properties"]["framework"]
    assert framework["enum"] == list(FRAMEWORKS) == list(PLUGINS)
    assert framework["default"] in PLUGINS


def test_unknown_frameworks_are_refused_by_every_entry_point() -> None:
    calls: list[Any] = [lambda: create("jax", None, None, "worker", 0),
                        lambda: seed_everything("jax", 1), lambda: configure_threads("jax")]
    for call in calls:
        with pytest.raises(AdapterError, match="unknown framework 'jax'; known: pytorch, tensorflow"):
            call()


def test_a_missing_framework_names_how_to_install_it() -> None:
    error = PLUGINS["tensorflow"].missing(ImportError("No module named 'tensorflow'"))
    assert str(error) == ("framework 'tensorflow' needs TensorFlow, which is not installed here: "
                          "pip install 'garfield[tensorflow]' (tensorflow-cpu) or tensorflow[and-cuda]")


def test_reading_the_registry_imports_no_framework() -> None:
    """The launcher and every replica read it: it must cost neither torch nor TensorFlow (nor NumPy)."""
    code = ("import sys; import garfield.adapters, garfield.adapters.plugins as p; p.plugin('tensorflow'); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
