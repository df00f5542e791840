"""The replica plan: a pure function of the job and the addressing, pinned on one example."""

from __future__ import annotations

import json
from pathlib import Path

from garfield.plan import ClusterDNS, Loopback, make_plan
from garfield.spec.validation import load_job

ROOT = Path(__file__).resolve().parents[2]


def test_msmw_plan_is_pinned() -> None:
    job = load_job(ROOT / "examples" / "mnist-msmw.yaml")
    plan = make_plan(job, ClusterDNS(namespace="ml"))
    assert plan.topology == "msmw" and plan.service_name == "mnist-msmw"
    assert [r.name for r in plan.replicas] == ([f"mnist-msmw-server-{i}" for i in range(4)]
                                               + [f"mnist-msmw-worker-{i}" for i in range(7)])
    byzantine = [r.name for r in plan.replicas if r.byzantine]
    assert byzantine == ["mnist-msmw-server-3", "mnist-msmw-worker-5", "mnist-msmw-worker-6"]
    w5 = plan.replicas[9]
    assert json.loads(w5.env["GARFIELD_ATTACK"]) == {"name": "signflip", "params": {"scale": 10}}
    s0 = plan.replicas[0]
    assert "GARFIELD_ATTACK" not in s0.env
    assert s0.address == "mnist-msmw-server-0.mnist-msmw.ml.svc:50051"
    assert s0.command == ["python", "-m", "garfield", "node"]
    assert s0.ports == {"grpc": 50051, "metrics": 9090}
    assert s0.env["GARFIELD_LISTEN"] == "0.0.0.0:50051"
    assert s0.env["GARFIELD_ROLE"] == "server" and s0.env["GARFIELD_INDEX"] == "0"
    assert s0.env["GARFIELD_SERVERS"] == ",".join(f"mnist-msmw-server-{i}.mnist-msmw.ml.svc:50051" for i in range(4))
    assert s0.env["GARFIELD_WORKERS"].split(",")[6] == "mnist-msmw-worker-6.mnist-msmw.ml.svc:50051"
    spec = json.loads(s0.env["GARFIELD_SPEC"])
    assert spec["topology"] == "msmw" and spec["workers"]["gar"] == {"name": "mda"}
    assert spec["training"]["timeouts"] == {"rpcSeconds": 30, "startupSeconds": 300}


def test_gpu_resources_and_placement_carry_over() -> None:
    job = load_job(ROOT / "examples" / "mnist-msmw-gpu.yaml")
    plan = make_plan(job, ClusterDNS(namespace="default"))
    worker = plan.by_role("worker")[0]
    assert worker.gpus == 1
    assert worker.resources["limits"]["nvidia.com/gpu"] == 1
    assert worker.node_selector == {"nvidia.com/gpu.present": "true"}
    assert worker.tolerations[0]["key"] == "nvidia.com/gpu"


def test_loopback_plan_gives_each_replica_its_ports() -> None:
    job = load_job(ROOT / "examples" / "mnist-decentralized.yaml")
    addressing = Loopback.sequential({"peer": 5}, 41000)
    plan = make_plan(job, addressing)
    assert [r.role for r in plan.replicas] == ["peer"] * 5
    assert [r.address for r in plan.replicas] == [f"127.0.0.1:{41000 + 2 * i}" for i in range(5)]
    assert plan.replicas[2].env["GARFIELD_METRICS_PORT"] == "41005"
    assert plan.replicas[0].env["GARFIELD_SERVERS"] == ""
    assert plan.replicas[4].byzantine and not plan.replicas[3].byzantine


def test_plan_is_deterministic() -> None:
    job = load_job(ROOT / "examples" / "mnist-msmw.yaml")
    a = make_plan(job, ClusterDNS(namespace="x")).to_dict()
    b = make_plan(load_job(ROOT / "examples" / "mnist-msmw.yaml"), ClusterDNS(namespace="x")).to_dict()
    assert a == b


def test_spec_output_path_reaches_every_replica_and_must_be_absolute() -> None:
    import pytest
    import yaml

    from garfield.spec.validation import InvalidJob, validate_manifest

    manifest = yaml.safe_load((ROOT / "examples" / "mnist-msmw.yaml").read_text())
    plan = make_plan(validate_manifest(manifest), ClusterDNS(namespace="ml"))
    assert all("GARFIELD_OUTPUT_DIR" not in r.env for r in plan.replicas)  # no output named: pods write nothing
    manifest["spec"]["output"] = {"path": "/results/mnist"}
    plan = make_plan(validate_manifest(manifest), ClusterDNS(namespace="ml"))
    assert {r.env["GARFIELD_OUTPUT_DIR"] for r in plan.replicas} == {"/results/mnist"}
    manifest["spec"]["output"] = {"path": "results"}
    with pytest.raises(InvalidJob, match="spec.output.path: 'results' does not match"):
        validate_manifest(manifest)
    manifest["spec"]["output"] = {}
    manifest["spec"]["workers"]["template"] = {"env": [{"name": "GARFIELD_OUTPUT_DIR", "value": "/tmp"}]}
    with pytest.raises(InvalidJob, match="GARFIELD_OUTPUT_DIR is set by Garfield on every replica"):
        validate_manifest(manifest)
