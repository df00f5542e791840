"""`garfield report` on its tiny grid: the markdown with every section, and real PNG plots."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from garfield.cli import main
from garfield.report.common import stats, why
from garfield.report.grid import Knobs
from garfield.report.jobs import JobRequest, Runner

SECTIONS = (
    "## Verdicts",
    "## 1. Accuracy per rule, attack and momentum mode",
    "## 2. Finding (a): crash resilience vs Byzantine resilience",
    "## 3. Finding (b): communication vs aggregation in the overhead",
    "## 4. Finding (c): Byzantine workers vs Byzantine servers",
    "## 5. Scaling with the number of workers and f",
    "## 6. What holds under A Little Is Enough",
)
PLOTS = ("resilience-accuracy.png", "resilience-crash-vs-byzantine.png", "resilience-overhead.png",
         "resilience-workers-vs-servers.png", "resilience-scaling.png", "resilience-alie.png")


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_tiny_report_writes_every_section_and_real_plots(tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert main(["report", "--tiny", "--output-dir", str(out), "--work-dir", str(tmp_path / "work")]) == 0
    text = (out / "resilience.md").read_text()
    assert "Partial report" not in text  # every job has a result
    for heading in SECTIONS:
        assert heading in text, heading
    # each finding states a verdict, and the ALIE section names its best combination
    verdicts = re.findall(r"this project (reproduces|partly reproduces|refutes) claim \([abc]\)", text)
    assert len(verdicts) >= 6  # in the verdicts list and in each finding
    assert "Best under A Little Is Enough:" in text
    assert "Wall time" in text and "load average" in text
    # the jobs ran: section 1's table has numbers, the real runs have speeds
    assert re.search(r"\| `median` \| worker \| \d+\.\d", text), text
    assert re.search(r"\| \d+\.\d steps/s, \d+ CPU ms", text), text
    for name in PLOTS:
        path = out / name
        assert f"]({name})" in text, name
        width, height = _png_size(path)
        assert width >= 300 and height >= 200, (name, width, height)
        pixels = np.asarray(matplotlib.image.imread(path))[..., :3]
        ink = (pixels < 0.9).any(axis=-1).mean()  # share of pixels that are not (near) white
        assert ink > 0.02, (name, ink)
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, name  # colours, text, axes: not a blank canvas

    # --saved-only writes the same report from the saved results, running nothing
    again = tmp_path / "again"
    assert main(["report", "--tiny", "--saved-only", "--output-dir", str(again), "--work-dir", str(tmp_path / "work")]) == 0
    rerendered = (again / "resilience.md").read_text()
    assert rerendered.split("## Verdicts")[1] == text.split("## Verdicts")[1]
    # with the measured run's wall time, not the re-render's
    wall = re.search(r"\*\*Wall time [\d.]+ min\*\* \([^)]*\)", text)
    assert wall and wall.group(0) in rerendered and "re-rendered with --saved-only" in rerendered, rerendered[:600]
    # and with nothing saved, says the report is partial
    empty = tmp_path / "empty"
    assert main(["report", "--tiny", "--saved-only", "--output-dir", str(empty), "--work-dir", str(tmp_path / "none")]) == 0
    assert "**Partial report:" in (empty / "resilience.md").read_text()
    assert "the earlier measurement's setting" in text  # section 6: ALIE at z = 1, where it does harm
    assert "server-side momentum is at least 1 point worse than worker-side for" in text


def test_saved_only_still_says_which_configurations_validation_refuses(tmp_path: Path) -> None:
    """Nothing saved and nothing run, yet a configuration the rules' resilience conditions refuse reads
    "not valid" with validation's reason, not "not run"."""
    refused = JobRequest(Knobs(workers=4, f_w=2, gar="median"))
    valid = JobRequest(Knobs(workers=5, f_w=1, gar="median"))
    runner = Runner(tmp_path, saved_only=True, log=lambda _: None)
    runner.run([refused, valid])
    assert runner.get(refused)["outcome"] == "invalid"
    assert "median" in runner.get(refused)["message"]
    assert runner.get(valid)["outcome"] == "missing"
    assert not (tmp_path / "results").exists() and not (tmp_path / "sims").exists()  # nothing ran
    assert why(runner.get(refused)).startswith("not valid: ")


@pytest.mark.parametrize(("values", "notes", "mark"), [
    ([0.9, 0.8], [], ""),
    ([None, None], ["training failed"], "failed"),
    ([None], ["not valid: median needs n > 2f"], "refused"),
    ([None, None, None], ["not run"], "not run"),
    ([0.9, None], ["training failed"], ""),  # some seeds ran: the cell has a mean
])
def test_a_heat_map_cell_with_no_accuracy_says_why(values: list[float | None], notes: list[str], mark: str) -> None:
    assert stats(values, notes).mark() == mark
