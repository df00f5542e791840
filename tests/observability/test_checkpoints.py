"""The checkpoint store (garfield.observability.checkpoints): atomic writes, keep-last-K, and a
damaged checkpoint detected by its manifest and skipped for the previous one."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from garfield.observability.checkpoints import CheckpointStore


def writer(payload: bytes):
    def write(path: Path) -> None:
        path.write_bytes(payload)
    return write


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_a_checkpoint_is_its_state_and_a_manifest_with_the_checksum(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ck", keep=2, job="j", replica="server-0", framework="pytorch")
    written = store.save(10, writer(b"state of step 10"), accuracy=0.5)
    assert names(tmp_path / "ck") == {"step-00000010.ckpt", "step-00000010.json"}
    manifest = json.loads((tmp_path / "ck" / "step-00000010.json").read_text())
    assert manifest["step"] == 10 and manifest["bytes"] == 16 and manifest["accuracy"] == 0.5
    assert manifest["replica"] == "server-0" and manifest["file"] == "step-00000010.ckpt"
    import hashlib
    assert manifest["sha256"] == hashlib.sha256(b"state of step 10").hexdigest()
    latest = store.latest()
    assert latest is not None and latest.step == 10 and latest.path == written.path


def test_a_write_that_fails_midway_leaves_no_checkpoint_and_no_partial_file(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    store.save(5, writer(b"good"))

    def half_then_crash(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.save(10, half_then_crash)
    assert names(tmp_path) == {"step-00000005.ckpt", "step-00000005.json"}
    latest = store.latest()
    assert latest is not None and latest.step == 5 and latest.path.read_bytes() == b"good"


def test_a_state_without_its_manifest_is_never_used_and_leftovers_are_cleaned(tmp_path: Path) -> None:
    """A crash between the state's rename and the manifest's: the state has no manifest, so it is
    not a checkpoint; a later save removes it and any temporary file."""
    store = CheckpointStore(tmp_path, keep=3)
    store.save(5, writer(b"five"))
    (tmp_path / "step-00000010.ckpt").write_bytes(b"ten, no manifest")
    (tmp_path / "step-00000015.ckpt.partial").write_bytes(b"interrupted")
    latest = store.latest()
    assert latest is not None and latest.step == 5
    store.save(20, writer(b"twenty"))
    assert names(tmp_path) == {"step-00000005.ckpt", "step-00000005.json", "step-00000020.ckpt", "step-00000020.json"}


def test_only_the_last_k_are_kept(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    for step in (10, 20, 30, 40):
        store.save(step, writer(f"step {step}".encode()))
    assert store.steps() == [40, 30]
    assert names(tmp_path) == {"step-00000040.ckpt", "step-00000040.json", "step-00000030.ckpt", "step-00000030.json"}


def test_a_truncated_checkpoint_is_detected_and_the_previous_one_used(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    store.save(10, writer(b"x" * 1000))
    store.save(20, writer(b"y" * 1000))
    newest = tmp_path / "step-00000020.ckpt"
    newest.write_bytes(newest.read_bytes()[:500])  # truncated on disk
    loaded: list[bytes] = []
    with caplog.at_level(logging.WARNING, logger="garfield.checkpoints"):
        restored = store.restore(lambda path: loaded.append(path.read_bytes()))
    assert restored is not None and restored.step == 10 and loaded == [b"x" * 1000]
    (warning,) = [r for r in caplog.records if r.getMessage() == "checkpoint unusable; trying the previous one"]
    fields = warning.__dict__["fields"]
    assert fields["step"] == 20 and "500 bytes, the manifest says 1000 (truncated?)" in fields["error"]


def test_an_altered_checkpoint_of_the_same_size_is_caught_by_the_checksum(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    store.save(10, writer(b"a" * 64))
    store.save(20, writer(b"b" * 64))
    (tmp_path / "step-00000020.ckpt").write_bytes(b"c" * 64)
    latest = store.latest()
    assert latest is not None and latest.step == 10


def test_a_checkpoint_the_loader_refuses_falls_back_to_the_previous(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    store.save(10, writer(b"old format"))
    store.save(20, writer(b"unloadable"))

    def load(path: Path) -> None:
        if path.read_bytes() == b"unloadable":
            raise ValueError("not this task's model")

    restored = store.restore(load)
    assert restored is not None and restored.step == 10


def test_nothing_to_resume_from(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path / "none", keep=1).restore(lambda path: None) is None
    with pytest.raises(ValueError, match="keep must be at least 1"):
        CheckpointStore(tmp_path, keep=0)
