"""The gRPC modules are generated from garfield.proto at first import in a source checkout: that
must work from a process that already loaded TensorFlow and torch (a test session, a notebook),
where running protoc in-process crashed with SIGSEGV."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("preload", ["tensorflow", "torch"])
def test_generation_after_framework_import(tmp_path: Path, preload: str) -> None:
    package = tmp_path / "src" / "garfield" / "proto"
    package.mkdir(parents=True)
    shutil.copy(REPO / "runtime" / "garfield" / "proto" / "garfield.proto", package)
    script = (f"import {preload}\n"
              "from pathlib import Path\n"
              "from garfield.proto._generate import generate\n"
              f"print(generate(Path({str(package)!r})))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    source = (package / "garfield_pb2_grpc.py").read_text()
    assert "class GarfieldStub" in source or "Stub" in source
    assert (package / "garfield_pb2.py").stat().st_size > 0
    assert not list(package.glob("*.tmp"))
