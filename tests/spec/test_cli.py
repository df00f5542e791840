"""`garfield validate`, `garfield plan` and `garfield crd` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def garfield(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "garfield", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_validate_accepts_every_example() -> None:
    examples = sorted(str(p) for p in (ROOT / "examples").glob("*.yaml"))
    result = garfield("validate", *examples)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": valid ") == len(examples)


def test_validate_rejects_with_field_messages(tmp_path: Path) -> None:
    manifest = yaml.safe_load((ROOT / "examples" / "mnist-msmw.yaml").read_text())
    manifest["spec"]["workers"]["gar"]["name"] = "krum"
    manifest["spec"]["attack"]["workers"]["count"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(manifest))
    result = garfield("validate", str(bad))
    assert result.returncode == 1
    assert "spec.workers: krum needs n >= 2f+3 on the 5 replies it aggregates (n=7, f=2)" in result.stderr
    assert "spec.attack.workers.count: 3 Byzantine workers exceed the f=2" in result.stderr


def test_plan_prints_names_roles_peers_and_resources() -> None:
    result = garfield("plan", "examples/mnist-msmw-gpu.yaml", "--namespace", "ml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.startswith("mnist-msmw-gpu-worker-8 "))
    assert "worker" in row and "mnist-msmw-gpu-worker-8.mnist-msmw-gpu.ml.svc:50051" in row
    assert "nvidia.com/gpu=1" in row
    assert any(line.startswith("servers: mnist-msmw-gpu-server-0.mnist-msmw-gpu.ml.svc:50051,") for line in lines)


def test_plan_json_is_machine_readable() -> None:
    result = garfield("plan", "examples/mnist-ssmw.yaml", "-o", "json", "--loopback", "--base-port", "45000")
    assert result.returncode == 0, result.stderr
    plan = yaml.safe_load(result.stdout)
    assert plan["topology"] == "ssmw"
    assert plan["replicas"][0]["address"] == "127.0.0.1:45000"
    assert [r["role"] for r in plan["replicas"]].count("worker") == 6


def test_crd_renders_the_schema() -> None:
    result = garfield("crd")
    assert result.returncode == 0
    crd = yaml.safe_load(result.stdout)
    assert crd["metadata"]["name"] == "byzantinetrainingjobs.garfield.dev"
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    workers = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["workers"]
    assert "mda" in workers["properties"]["gar"]["properties"]["name"]["enum"]


def test_every_schema_field_has_a_description() -> None:
    from garfield.spec.schema import job_schema

    missing: list[str] = []

    def walk(node: dict, path: str) -> None:
        if path not in ("", ".metadata", ".apiVersion", ".kind") and not node.get("description") and path.count(".") > 0:
            if not path.endswith("]") and "additionalProperties" not in path:
                missing.append(path)
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{key}")
        if "items" in node:
            walk(node["items"], f"{path}[]")

    walk(job_schema(), "")
    assert missing == ["metadata"] or missing == [], missing
