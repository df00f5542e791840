"""checkov scans the rendered chart (defaults and every ci/ values file) and the Dockerfile.

checkov lives in its own virtualenv (scripts/install-checkov.sh): its pins clash with the project's.
A missing install fails this test; it is never skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from helm_support import CI_VALUES, REPO, Helm

CONFIG = REPO / ".checkov.yaml"


def checkov_binary() -> Path:
    home = os.environ.get("GARFIELD_CHECKOV_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "garfield-checkov")
    return Path(home) / "venv" / "bin" / "checkov"


def test_every_skipped_check_has_a_reason() -> None:
    skipped = yaml.safe_load(CONFIG.read_text())["skip-check"]
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^\s*-\s*(CKV\w+)\s*(?:#\s*(.*))?$", CONFIG.read_text(), re.M)}
    assert set(lines) == set(skipped)
    for check, reason in lines.items():
        assert reason and len(reason) >= 40, f"{check} is skipped without a reason in .checkov.yaml"


def test_checkov_passes_on_chart_and_dockerfile(helm: Helm, tmp_path: Path) -> None:
    binary = checkov_binary()
    if not binary.is_file():
        pytest.fail(f"checkov not installed at {binary}: run scripts/install-checkov.sh", pytrace=False)
    files: list[str] = []
    for values in [None, *CI_VALUES]:
        name = values.stem if values else "defaults"
        out = tmp_path / f"{name}.yaml"
        out.write_text(helm.template(*([values] if values else [])).stdout)
        files += ["-f", str(out)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_"))}
    proc = subprocess.run(
        [str(binary), "--config-file", str(CONFIG), *files, "-f", str(REPO / "Dockerfile"), "--output", "json"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}, proc.stdout[:500]
    failures = [
        f"{r['check_type']}: {c['check_id']} {c['check_name']} ({c['resource']} in {Path(c['file_path']).name})"
        for r in reports for c in r["results"].get("failed_checks", [])
    ]
    assert not failures, "checkov failed checks:\n" + "\n".join(failures)
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
        assert report["summary"]["passed"] > 50, report["summary"]
    assert proc.returncode == 0, proc.stderr[-2000:]
