"""Fixtures for the chart tests: the cached helm binary (from scripts/test-cluster.sh) and a renderer.

helm comes from the same cache as the test control plane's binaries. A missing binary fails the
tests (never skips them), naming the command that fetches it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from helm_support import Helm, documents
from support.cluster import BUILD_HINT, cache_dir


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = cache_dir() / "bin" / "helm"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"helm not found at {binary}: {BUILD_HINT}", pytrace=False)
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(home / var.lower())
    env.pop("KUBECONFIG", None)
    return Helm(binary, env)


Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def render(helm: Helm) -> Render:
    """helm template -> list of documents (cached per argument set: rendering is pure)."""
    cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}

    def _render(*values_files: Path, sets: Sequence[str] = ()) -> list[dict[str, Any]]:
        key = (tuple(values_files), tuple(sets))
        if key not in cache:
            cache[key] = documents(helm.template(*values_files, sets=sets).stdout)
        return cache[key]

    return _render
