"""A correct server's checkpoints: the last K states it can resume from, each checked by a checksum.

A checkpoint of step s is two files in the replica's `checkpoints/` folder: `step-<s>.ckpt`, the
state in its framework's own format (written by the adapter's `save_state`: model, optimizer
state, RNG state), and `step-<s>.json`, its manifest (job, replica, framework, step, size,
SHA-256). Both are written to a temporary name in the same folder, flushed to disk (fsync) and
renamed, the state first and the manifest last, and the folder is fsynced after the renames: a
crash at any point leaves either the complete checkpoint or no manifest for it, never a
half-written file under a final name. Only the newest `keep` checkpoints are kept.

`latest` returns the newest checkpoint whose state file matches its manifest's size and checksum.
One that does not (truncated, altered, its state missing) is skipped with a warning naming what is
wrong, and the previous one is used.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from garfield.observability.models import sha256_of

log = logging.getLogger("garfield.checkpoints")

FOLDER = "checkpoints"
_MANIFEST = re.compile(r"^step-(\d+)\.json$")
PARTIAL = ".partial"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path  # the state file
    manifest: dict[str, Any]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (named in the message: missing, truncated, altered)."""


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


class CheckpointStore:
    """The checkpoints of one replica, in `folder` (usually <output>/<role>-<index>/checkpoints)."""

    def __init__(self, folder: Path, keep: int, *, job: str = "", replica: str = "", framework: str = "") -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.folder = Path(folder)
        self.keep = keep
        self.job, self.replica, self.framework = job, replica, framework

    @staticmethod
    def state_name(step: int) -> str:
        return f"step-{step:08d}.ckpt"

    @staticmethod
    def manifest_name(step: int) -> str:
        return f"step-{step:08d}.json"

    def save(self, step: int, write_state: Callable[[Path], None], **extra: Any) -> Checkpoint:
        """Write the checkpoint of `step`: `write_state(path)` writes the state to `path` (a
        temporary name in the same folder); then the manifest; then older ones beyond `keep` go."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / self.state_name(step)
        partial = self.folder / (target.name + PARTIAL)
        try:
            write_state(partial)
            _fsync_file(partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        manifest = {
            "job": self.job, "replica": self.replica, "framework": self.framework, "step": step,
            "file": target.name, "bytes": target.stat().st_size, "sha256": sha256_of(target),
            "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **extra,
        }
        manifest_path = self.folder / self.manifest_name(step)
        partial_manifest = self.folder / (manifest_path.name + PARTIAL)
        try:
            with open(partial_manifest, "w") as fh:
                fh.write(json.dumps(manifest, indent=2) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial_manifest, manifest_path)
        finally:
            partial_manifest.unlink(missing_ok=True)
        _fsync_dir(self.folder)
        self.prune()
        return Checkpoint(step, target, manifest)

    def steps(self) -> list[int]:
        """Steps that have a manifest, newest first (not yet checked)."""
        if not self.folder.is_dir():
            return []
        found = [int(m.group(1)) for p in self.folder.iterdir() if (m := _MANIFEST.match(p.name))]
        return sorted(found, reverse=True)

    def prune(self) -> None:
        """Keep the newest `keep` checkpoints; remove the others (manifest first) and leftover
        temporary files of interrupted writes."""
        for step in self.steps()[self.keep:]:
            (self.folder / self.manifest_name(step)).unlink(missing_ok=True)
            (self.folder / self.state_name(step)).unlink(missing_ok=True)
        kept = {self.state_name(s) for s in self.steps()}
        for path in self.folder.iterdir():
            if path.name.endswith(PARTIAL) or (path.name.endswith(".ckpt") and path.name not in kept):
                path.unlink(missing_ok=True)

    def verify(self, step: int) -> Checkpoint:
        """The checkpoint of `step` after checking its state against its manifest; CheckpointError otherwise."""
        manifest_path = self.folder / self.manifest_name(step)
        try:
            manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{manifest_path}: unreadable manifest ({exc})") from None
        path = self.folder / str(manifest.get("file", ""))
        if manifest.get("step") != step or not path.is_file():
            raise CheckpointError(f"{path}: missing, or not the state of step {step}")
        size = path.stat().st_size
        if size != manifest.get("bytes"):
            raise CheckpointError(f"{path}: {size} bytes, the manifest says {manifest.get('bytes')} (truncated?)")
        actual = sha256_of(path)
        if actual != manifest.get("sha256"):
            raise CheckpointError(f"{path}: SHA-256 {actual[:12]}... does not match the manifest's "
                                  f"{str(manifest.get('sha256'))[:12]}...")
        return Checkpoint(step, path, manifest)

    def restore(self, load: Callable[[Path], None]) -> Checkpoint | None:
        """Load the newest checkpoint that is valid and that `load` accepts; a damaged one, or one
        `load` refuses, is logged and the previous one tried. None: nothing to resume from."""
        for step in self.steps():
            try:
                checkpoint = self.verify(step)
                load(checkpoint.path)
            except Exception as exc:  # any refusal of one checkpoint: the previous may still do
                log.warning("checkpoint unusable; trying the previous one",
                            extra={"fields": {"step": step, "error": f"{type(exc).__name__}: {exc}"}})
                continue
            return checkpoint
        return None

    def latest(self) -> Checkpoint | None:
        """The newest valid checkpoint; a damaged one is logged and the previous one tried."""
        for step in self.steps():
            try:
                return self.verify(step)
            except CheckpointError as exc:
                log.warning("checkpoint unusable; trying the previous one",
                            extra={"fields": {"step": step, "error": str(exc)}})
        return None
