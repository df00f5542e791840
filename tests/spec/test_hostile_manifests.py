"""Manifests written to hurt the reader: each gets one clear message, never a traceback, a hang or
an exhausted memory (spec/documents.py). The files are built the way an attacker would write them;
the last test runs `garfield validate` on all of them at once, as a user would."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from garfield.spec import documents
from garfield.spec.validation import InvalidJob, load_job, validate_manifest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "examples" / "mnist-msmw.yaml").read_text()


def alias_bomb(levels: int = 8) -> str:
    """task.args whose YAML is 9 lines but whose value holds 10^levels strings once expanded."""
    lines = ["      a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"      a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    text = EXAMPLE.replace("    args:\n      hidden: 128", "    args:\n" + "\n".join(lines))
    assert text != EXAMPLE
    return text


def env_override() -> str:
    text = EXAMPLE.replace("    replicas: 7\n", "    replicas: 7\n    template:\n      env:\n"
                           "      - name: GARFIELD_THREADS\n        value: '2'\n"
                           "      - name: GARFIELD_ROLE\n        value: server\n", 1)
    assert text != EXAMPLE
    return text


# (id, file content, the one message expected, exactly)
HOSTILE: list[tuple[str, bytes, str]] = [
    ("deep-nesting", (EXAMPLE + "x: " + "[" * 5000 + "]" * 5000 + "\n").encode(),
     f"nested deeper than 64 levels (line {EXAMPLE.count(chr(10)) + 1})"),
    ("not-utf8", b"\xff\xfeapiVersion: v1\n", "not UTF-8 text: byte 0xff at offset 0"),
    ("latin1-inside", EXAMPLE.replace("mnist-msmw", "caf\xe9", 1).encode("latin-1"),
     f"not UTF-8 text: byte 0xe9 at offset {EXAMPLE.index('mnist-msmw') + 3}"),
    ("huge", b"#" * (documents.MAX_BYTES + 1), "larger than 1572864 bytes (Kubernetes stores no object over 1.5 MiB)"),
    ("alias-bomb", alias_bomb().encode(), "holds more than 100000 values once YAML aliases are expanded (an alias bomb?)"),
    ("nan-learning-rate", EXAMPLE.replace("learningRate: 0.1", "learningRate: .nan").encode(),
     "spec.training.learningRate: nan is not a finite number (JSON and Kubernetes cannot store it)"),
    # Where a bound names the field more precisely, its message is the one given.
    ("inf-momentum", EXAMPLE.replace("workerMomentum: 0.9", "workerMomentum: -.inf").encode(),
     "spec.training.workerMomentum: -inf is below the minimum 0"),
    ("nan-in-task-args", EXAMPLE.replace("hidden: 128", "hidden: 128\n      scale: .NaN").encode(),
     "spec.task.args.scale: nan is not a finite number (JSON and Kubernetes cannot store it)"),
    ("contract-override", env_override().encode(),
     "spec.workers.template.env[1].name: GARFIELD_ROLE is set by Garfield on every replica (the replica contract: "
     "role, index, spec, peers); a template cannot set it"),
    ("broken-yaml", b"spec: [unclosed\n", "not valid YAML"),
]


@pytest.mark.parametrize("content, message", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_each_hostile_file_gets_one_clear_message(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(content)
    with pytest.raises(InvalidJob) as info:
        load_job(path)
    errors = info.value.errors
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_a_byte_order_mark_and_the_contract_free_variables_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + EXAMPLE.encode())
    assert load_job(path).name == "mnist-msmw"
    manifest = yaml.safe_load(env_override())
    manifest["spec"]["workers"]["template"]["env"].pop()  # GARFIELD_THREADS alone: a tuning knob, allowed
    assert validate_manifest(manifest).spec.workers.template.env == [{"name": "GARFIELD_THREADS", "value": "2"}]


def test_in_memory_manifests_are_bounded_too() -> None:
    """What the webhook and the operator hand over (already parsed) meets the same bounds."""
    manifest = yaml.safe_load(EXAMPLE)
    shared: list[object] = ["x"] * 10
    for _ in range(6):
        shared = [shared] * 10  # 10^7 values by reference, a few hundred objects in memory
    bombed = copy.deepcopy(manifest)
    bombed["spec"]["task"]["args"] = {"a": shared}
    with pytest.raises(InvalidJob, match="holds more than 100000 values"):
        validate_manifest(bombed)
    deep: object = 1
    for _ in range(100):
        deep = [deep]
    nested = copy.deepcopy(manifest)
    nested["spec"]["task"]["args"] = {"a": deep}
    with pytest.raises(InvalidJob) as info:
        validate_manifest(nested)
    assert info.value.errors == ["spec.task.args.a" + "[0]" * 61 + ": nested deeper than 64 levels"]


def test_garfield_validate_prints_no_traceback(tmp_path: Path) -> None:
    paths = []
    for name, content, _ in HOSTILE:
        path = tmp_path / f"{name}.yaml"
        path.write_bytes(content)
        paths.append(str(path))
    result = subprocess.run([sys.executable, "-m", "garfield", "validate", *paths],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Error:" not in result.stderr, result.stderr
    for (name, _, message), path in zip(HOSTILE, paths, strict=True):
        assert f"{path}: invalid ByzantineTrainingJob:\n  {message}" in result.stderr, name
