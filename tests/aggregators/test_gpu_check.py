"""bench/gpu_check.py stays runnable: the script a lent GPU machine runs, exercised here on the CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch

from garfield.aggregators.catalog import RULES
from garfield.aggregators.preaggregation import STAGES

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_passes_on_the_cpu_and_covers_every_rule_and_framework(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--dim", "2000",
                          "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text())
    assert report["ok"] and report["device"] == "cpu"
    rules = {c["rule"]: c for c in report["checks"] if c["check"] == "rule"}
    assert set(rules) == set(RULES)
    assert all(c["close"] and c["same_device"] for c in rules.values()), rules
    stages = {c["stage"]: c for c in report["checks"] if c["check"] == "stage"}
    assert set(stages) == set(STAGES) and all(c["ok"] for c in stages.values()), stages
    adapters = {c["framework"]: c for c in report["checks"] if c["check"] == "adapter"}
    assert set(adapters) == {"pytorch", "tensorflow"}
    for entry in adapters.values():
        assert "skipped" not in entry and entry["params_changed"] and entry["finite"], entry


def test_gpu_check_reports_a_rule_that_disagrees_with_the_cpu() -> None:
    """The check can fail: a device result that differs from the CPU one is reported as not ok."""
    # Loaded from its file: bench/ is not on sys.path (its operator.py would shadow the stdlib's).
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    gpu_check = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = gpu_check
    spec.loader.exec_module(gpu_check)

    def krum_off_by_one(name: str, rows: torch.Tensor, f: int, **params: object) -> torch.Tensor:
        result = gpu_check.aggregate(name, rows, f, **params)
        return result + 1.0 if name == "krum" else result

    checks = gpu_check.check_rules(torch.device("cpu"), n=7, d=300, device_aggregate=krum_off_by_one)
    assert [c["rule"] for c in checks if not c["ok"]] == ["krum"]
