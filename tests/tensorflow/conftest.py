"""Helpers for the TensorFlow tests: a job spec built from the Keras example with overrides."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from garfield.spec import validate_manifest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KERAS_EXAMPLE = ROOT / "examples" / "mnist-msmw-keras.yaml"


def job_spec(**training: Any) -> Any:
    """The Keras example's typed spec with `spec.training` fields overridden (camelCase keys)."""
    manifest = copy.deepcopy(yaml.safe_load(KERAS_EXAMPLE.read_text()))
    manifest["spec"]["training"].update(training)
    if training.get("learningRate", 0) is None:
        del manifest["spec"]["training"]["learningRate"]
    return validate_manifest(manifest).spec


@pytest.fixture(scope="session")
def make_spec() -> Any:
    """`make_spec(batchSize=8, ...)`: see :func:`job_spec`."""
    return job_spec


@pytest.fixture(scope="session")
def tf() -> Any:
    from garfield.adapters.tensorflow import import_tensorflow

    return import_tensorflow()
