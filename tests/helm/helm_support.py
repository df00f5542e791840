"""Helpers for the chart tests: a helm runner with private homes, manifest parsing, lookups."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "garfield"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE_NAMESPACE = "garfield-system"


@dataclass(frozen=True)
class Helm:
    """A helm binary with private HELM_* homes, so tests never read or write ~/.config/helm."""

    binary: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=self.env, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def template(self, *values_files: Path, sets: Sequence[str] = (), release: str = "garfield",
                 namespace: str = RELEASE_NAMESPACE, check: bool = True) -> subprocess.CompletedProcess[str]:
        args = ["template", release, str(CHART), "--namespace", namespace]
        for path in values_files:
            args += ["--values", str(path)]
        for item in sets:
            args += ["--set", item]
        return self.run(*args, check=check)


def documents(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a rendered manifest stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]:
    """Documents of a kind, optionally filtered by name and namespace."""
    return [
        d for d in docs
        if d.get("kind") == kind
        and (name is None or d["metadata"]["name"] == name)
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]
