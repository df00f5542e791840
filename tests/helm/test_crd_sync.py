"""One CRD, three places: the schema module, crds/, and the chart's crds/ (byte for byte)."""

from __future__ import annotations

import subprocess
import sys

import yaml

from garfield.cli import render_crd_yaml
from garfield.spec.schema import crd

from helm_support import CHART, REPO

CRD_FILE = REPO / "crds" / "byzantinetrainingjobs.yaml"
CHART_CRD_FILE = CHART / "crds" / "byzantinetrainingjobs.yaml"
HINT = "run scripts/sync-crds.sh after changing runtime/garfield/spec/schema.py"


def test_crd_files_match_the_schema() -> None:
    rendered = render_crd_yaml(crd())
    assert CRD_FILE.read_text() == rendered, f"crds/ is stale: {HINT}"
    assert CHART_CRD_FILE.read_bytes() == CRD_FILE.read_bytes(), f"the chart's CRD differs from crds/: {HINT}"


def test_the_chart_ships_the_garfield_crd_and_kopfs_peering_crds() -> None:
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["byzantinetrainingjobs.yaml", "kopf-peerings.yaml"]
    docs = list(yaml.safe_load_all((CHART / "crds" / "kopf-peerings.yaml").read_text()))
    assert {(d["spec"]["names"]["kind"], d["spec"]["scope"]) for d in docs} == {
        ("KopfPeering", "Namespaced"), ("ClusterKopfPeering", "Cluster")}
    # kopf finds them at kopf.dev/v1 (kopf._cogs.structs.references).
    assert all(d["spec"]["group"] == "kopf.dev" and d["spec"]["versions"][0]["name"] == "v1" for d in docs)


def test_sync_script_check_mode_detects_drift(tmp_path) -> None:
    """--check passes on the committed files and fails (writing nothing) on a stale copy."""
    env_python = {"PYTHON": sys.executable}
    ok = subprocess.run(["bash", str(REPO / "scripts" / "sync-crds.sh"), "--check"], capture_output=True, text=True,
                        env={**env_python, "PATH": "/usr/bin:/bin"})
    assert ok.returncode == 0, ok.stderr

    # A copy of the repository layout with one drifted file: the script must notice and not fix it.
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "sync-crds.sh").write_text((REPO / "scripts" / "sync-crds.sh").read_text())
    (tmp_path / "runtime").symlink_to(REPO / "runtime")
    for target in (tmp_path / "crds" / CRD_FILE.name, tmp_path / "helm" / "garfield" / "crds" / CRD_FILE.name):
        target.parent.mkdir(parents=True)
        target.write_bytes(CRD_FILE.read_bytes())
    drifted = tmp_path / "helm" / "garfield" / "crds" / CRD_FILE.name
    drifted.write_text(CRD_FILE.read_text().replace("minimum: 1\n", "minimum: 2\n", 1))
    stale = subprocess.run(["bash", str(tmp_path / "scripts" / "sync-crds.sh"), "--check"], capture_output=True,
                           text=True, env={**env_python, "PATH": "/usr/bin:/bin"})
    assert stale.returncode == 1
    assert "helm/garfield/crds/byzantinetrainingjobs.yaml is stale" in stale.stderr
    assert "minimum: 2" in drifted.read_text(), "--check must not rewrite files"
