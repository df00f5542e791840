"""The CRD on a real kube-apiserver v1.20: examples accepted, schema-checkable mistakes refused,
`kubectl explain` teaches the API, `kubectl get btj` shows the printer columns."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from support.cluster import ControlPlane
from support.crd import install_crd
from support.manifests import job

pytestmark = pytest.mark.cluster

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
NS = "crd-tests"

# Valid: one server (byzantine and gar left to their defaults), five workers (f=1, median), no training block.
BASE = job("bad", servers=1, server_f=None, server_gar=None, workers=5, worker_f=1, gar="median", training=None)


def _with(path: str, value: object) -> dict:
    doc = copy.deepcopy(BASE)
    node = doc
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    if value is _DELETE:
        node.pop(last)
    else:
        node[last] = value
    return doc


_DELETE = object()

# (id, manifest, field path the apiserver must name)
BAD = [
    ("negative-replicas", _with("spec.workers.replicas", -1), "spec.workers.replicas"),
    ("zero-replicas", _with("spec.servers.replicas", 0), "spec.servers.replicas"),
    ("replicas-not-integer", _with("spec.workers.replicas", "three"), "spec.workers.replicas"),
    ("negative-byzantine", _with("spec.workers.byzantine", -1), "spec.workers.byzantine"),
    ("unknown-framework", _with("spec.framework", "jax"), "spec.framework"),
    ("unknown-gar", _with("spec.workers.gar", {"name": "mean-ish"}), "spec.workers.gar.name"),
    ("unknown-topology", _with("spec.topology", "star"), "spec.topology"),
    ("bad-entrypoint", _with("spec.task", {"entrypoint": "not a module"}), "spec.task.entrypoint"),
    ("missing-entrypoint", _with("spec.task", {}), "spec.task.entrypoint"),
    ("missing-workers", _with("spec.workers", _DELETE), "spec.workers"),
    ("missing-task", _with("spec.task", _DELETE), "spec.task"),
    ("bad-clean-pod-policy", _with("spec.runPolicy", {"cleanPodPolicy": "Sometimes"}), "spec.runPolicy.cleanPodPolicy"),
    ("negative-backoff", _with("spec.runPolicy", {"backoffLimit": -2}), "spec.runPolicy.backoffLimit"),
    ("suspend-not-bool", _with("spec.runPolicy", {"suspend": "yes"}), "spec.runPolicy.suspend"),
    ("momentum-too-high", _with("spec.training", {"workerMomentum": 1.5}), "spec.training.workerMomentum"),
    ("steps-zero", _with("spec.training", {"steps": 0}), "spec.training.steps"),
    ("bad-gpu-quantity", _with("spec.workers.template", {"resources": {"limits": {"nvidia.com/gpu": "lots"}}}),
     "spec.workers.template.resources.limits"),
]


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    install_crd(control_plane)
    control_plane.kubectl("create", "namespace", NS, check=False)
    return control_plane


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_is_accepted(cluster: ControlPlane, example: Path) -> None:
    cluster.kubectl("apply", "-n", NS, "-f", str(example))
    name = yaml.safe_load(example.read_text())["metadata"]["name"]
    stored = json.loads(cluster.kubectl("get", "btj", name, "-n", NS, "-o", "json").stdout)
    assert stored["spec"]["workers"]["replicas"] == yaml.safe_load(example.read_text())["spec"]["workers"]["replicas"]
    # Schema defaults are filled by the apiserver, as the local structural check fills them.
    assert stored["spec"]["framework"] in ("pytorch", "tensorflow")
    assert "gar" in stored["spec"]["workers"]


@pytest.mark.parametrize("doc,field", [pytest.param(d, f, id=i) for i, d, f in BAD])
def test_schema_refuses_bad_manifests(cluster: ControlPlane, doc: dict, field: str) -> None:
    # --validate=false: the apiserver itself (not kubectl's client-side check) must refuse it.
    proc = cluster.kubectl("apply", "--validate=false", "-n", NS, "-f", "-", input=json.dumps(doc), check=False)
    assert proc.returncode != 0, f"accepted: {doc}"
    assert field in proc.stderr, proc.stderr
    assert cluster.kubectl("get", "btj", "bad", "-n", NS, check=False).returncode != 0


def test_kubectl_explain_shows_field_descriptions(cluster: ControlPlane) -> None:
    out = cluster.kubectl("explain", "byzantinetrainingjob.spec.workers").stdout
    assert "Each pulls models from the servers" in out
    for field in ("replicas", "byzantine", "gar", "template"):
        assert field in out
    out = cluster.kubectl("explain", "btj.spec.workers.byzantine").stdout
    assert "first n - f replies" in out


def test_printer_columns_show_status(cluster: ControlPlane) -> None:
    doc = copy.deepcopy(BASE)
    doc["metadata"]["name"] = "columns"
    cluster.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(doc))
    status = {"status": {"phase": "Running", "progress": {"step": 123, "accuracy": 0.875},
                         "replicaStatuses": {"servers": {"ready": 1}, "workers": {"ready": 4}}}}
    cluster.kubectl("patch", "btj", "columns", "-n", NS, "--subresource=status", "--type=merge", "-p", json.dumps(status))
    lines = cluster.kubectl("get", "btj", "columns", "-n", NS).stdout.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "STEP", "ACCURACY", "SERVERS", "WORKERS", "AGE"]
    assert lines[1].split()[:6] == ["columns", "Running", "123", "0.875", "1", "4"]


def test_status_is_a_subresource(cluster: ControlPlane) -> None:
    """A spec update must not write status, and a status update must not write spec."""
    doc = copy.deepcopy(BASE)
    doc["metadata"]["name"] = "subresource"
    doc["status"] = {"phase": "Succeeded"}
    cluster.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(doc))
    stored = json.loads(cluster.kubectl("get", "btj", "subresource", "-n", NS, "-o", "json").stdout)
    assert "phase" not in (stored.get("status") or {})
