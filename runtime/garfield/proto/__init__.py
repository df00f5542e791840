"""Protobuf messages and gRPC service of the Garfield wire protocol.

The modules are generated from ``garfield.proto`` by the build; a source checkout or an editable
install generates them here at first import (into the package folder, or a per-user cache folder
when that is read-only).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

_HERE = Path(__file__).resolve().parent


def _load_from(folder: Path) -> tuple[ModuleType, ModuleType]:
    modules = []
    for name in ("garfield_pb2", "garfield_pb2_grpc"):
        full = f"{__name__}.{name}"
        spec = importlib.util.spec_from_file_location(full, folder / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
        modules.append(module)
    return modules[0], modules[1]


def _stale(folder: Path) -> bool:
    proto_mtime = (_HERE / "garfield.proto").stat().st_mtime
    # One second of slack: installers may stamp every file with its own extraction time.
    return any(not (folder / m).exists() or (folder / m).stat().st_mtime < proto_mtime - 1.0
               for m in ("garfield_pb2.py", "garfield_pb2_grpc.py"))


def _ensure() -> tuple[ModuleType, ModuleType]:
    from garfield.proto._generate import generate

    if (_HERE / "garfield.proto").exists() and _stale(_HERE):
        try:
            generate(_HERE)
        except OSError:  # read-only install: generate into a cache folder instead
            cache = Path(tempfile.gettempdir()) / "garfield-proto-cache"
            if _stale(cache):
                generate(_HERE, cache)
            return _load_from(cache)
    return (importlib.import_module(f"{__name__}.garfield_pb2"), importlib.import_module(f"{__name__}.garfield_pb2_grpc"))


pb2, pb2_grpc = _ensure()

TensorRequest = pb2.TensorRequest
TensorChunk = pb2.TensorChunk
StatusRequest = pb2.StatusRequest
StatusReply = pb2.StatusReply
ExchangeRequest = pb2.ExchangeRequest
ExchangeReply = pb2.ExchangeReply
RequestError = pb2.RequestError
Cancel = pb2.Cancel
GRADIENT: int = pb2.GRADIENT
MODEL: int = pb2.MODEL
PROPOSAL: int = pb2.PROPOSAL
KIND_NAMES = {pb2.GRADIENT: "gradient", pb2.MODEL: "model", pb2.PROPOSAL: "proposal"}

SERVICE = "garfield.v1.Node"
EXCHANGE = f"/{SERVICE}/Exchange"
GET_TENSOR = f"/{SERVICE}/GetTensor"
STATUS = f"/{SERVICE}/Status"

__all__ = ["pb2", "pb2_grpc", "TensorRequest", "TensorChunk", "StatusRequest", "StatusReply", "ExchangeRequest",
           "ExchangeReply", "RequestError", "Cancel", "GRADIENT", "MODEL", "PROPOSAL", "KIND_NAMES", "SERVICE",
           "EXCHANGE", "GET_TENSOR", "STATUS"]
