"""The final model of a correct server (peer) as a file its user can load, and its manifest.

`write_model` asks the adapter to write the model in its framework's own format (PyTorch
state_dict, Keras `.keras`) and then writes `model.json` beside it: job, replica, step, accuracy,
framework, format, parameter count and the file's SHA-256. Both are written under a temporary
name and renamed, the manifest last, so a folder with a `model.json` always holds the complete
model it describes, and a reader can check it (`read_manifest` verifies the checksum).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from garfield.adapters.base import FrameworkAdapter

MANIFEST = "model.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_model(adapter: FrameworkAdapter, folder: Path, *, job: str, replica: str, framework: str, step: int,
                accuracy: float | None, resumed_from: int | None = None) -> dict[str, Any]:
    """Write the model and its manifest into `folder` (created); returns the manifest. `resumed_from`:
    the checkpoint step the replica's training resumed from (None: it trained from step 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    name, kind = adapter.export(folder)
    path = folder / name
    manifest = {
        "job": job,
        "replica": replica,
        "framework": framework,
        "format": kind,
        "file": name,
        "path": str(path.resolve()),
        "step": step,
        "accuracy": accuracy,
        "parameters": adapter.num_params,
        "resumed_from": resumed_from,
        "sha256": sha256_of(path) if path.is_file() else None,  # a TF checkpoint is several files
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    partial = folder / (MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(partial, folder / MANIFEST)
    return manifest


class ModelError(ValueError):
    """A model folder that does not hold the complete model its manifest describes."""


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of `folder`, after checking that the model file is there and matches its
    checksum; ModelError names what is wrong (missing, half-written, altered)."""
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise ModelError(f"{folder}: no {MANIFEST} (no model was written there, or not completely)") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{folder / MANIFEST}: not JSON ({exc})") from None
    path = folder / str(manifest.get("file", ""))
    expected = manifest.get("sha256")
    if expected is not None:
        if not path.is_file():
            raise ModelError(f"{path}: missing (the manifest names it)")
        actual = sha256_of(path)
        if actual != expected:
            raise ModelError(f"{path}: SHA-256 {actual[:12]}... does not match the manifest's {str(expected)[:12]}...")
    return manifest
