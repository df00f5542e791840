"""Generate the protobuf / gRPC Python modules from garfield.proto.

Used twice: by the build (setup.py's build_py hook writes them into the wheel) and, for editable
installs and source checkouts, at first import (:mod:`garfield.proto`). Generated files are never
committed. Writes go to a temporary name and are renamed into place, so several node processes
starting at once on a fresh checkout never see a half-written module.

protoc runs in a child interpreter, never in the importing process: grpc_tools' protoc is C++
linked against its own protobuf, and run in a process that already loaded TensorFlow or torch
(a test session, a notebook) it crashed with SIGSEGV.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

PROTO_NAME = "garfield.proto"
MODULES = ("garfield_pb2.py", "garfield_pb2_grpc.py")


def generate(package_dir: Path, out_dir: Path | None = None) -> Path:
    """Run grpc_tools.protoc on `package_dir/garfield.proto`; write the modules to `out_dir`
    (default: `package_dir`). Returns the folder holding them."""
    import importlib.resources
    import importlib.util

    if importlib.util.find_spec("grpc_tools") is None:  # pragma: no cover - a build and runtime requirement
        raise RuntimeError("generating garfield's protobuf code needs grpcio-tools (pip install grpcio-tools)")

    package_dir = Path(package_dir)
    out_dir = Path(out_dir or package_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # protoc resolves imports from the proto root so generated code imports `garfield.proto.garfield_pb2`.
    root = package_dir.parent.parent
    rel = package_dir.relative_to(root) / PROTO_NAME
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory(prefix="garfield-proto-") as tmp:
        run = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", f"-I{well_known}",
                              f"--python_out={tmp}", f"--grpc_python_out={tmp}", str(rel)],
                             capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise RuntimeError(f"protoc failed ({run.returncode}) on {package_dir / PROTO_NAME}: {run.stderr.strip()}")
        generated = Path(tmp) / rel.parent
        for name in MODULES:
            fd, partial = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write((generated / name).read_bytes())
            os.replace(partial, out_dir / name)
    return out_dir


if __name__ == "__main__":
    print(generate(Path(__file__).resolve().parent))
