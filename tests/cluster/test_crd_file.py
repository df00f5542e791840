"""crds/byzantinetrainingjobs.yaml is exactly what `garfield crd` renders from the schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from garfield.cli import render_crd_yaml
from garfield.spec.schema import crd

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "byzantinetrainingjobs.yaml"


def test_crd_file_equals_rendering() -> None:
    assert CRD_FILE.read_text() == render_crd_yaml(crd()), (
        "crds/byzantinetrainingjobs.yaml drifted from runtime/garfield/spec/schema.py; "
        "regenerate it with: garfield crd > crds/byzantinetrainingjobs.yaml")


def test_garfield_crd_command_prints_the_file() -> None:
    out = subprocess.run([sys.executable, "-m", "garfield", "crd"], capture_output=True, text=True, check=True).stdout
    assert out == CRD_FILE.read_text()
