"""`garfield report [--grid full|tiny] [--output-dir D]`: run every section's jobs, write the markdown and plots."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from garfield.report import accuracy, alie, crash, overhead, scaling, servers
from garfield.report.common import Section
from garfield.report.grid import GRIDS, Grid
from garfield.report.jobs import JobRequest, Runner

MARKDOWN = "resilience.md"
RUN_RECORD = "run.json"  # in --work-dir: the complete run's wall time and loads, for a --saved-only re-render
SECTIONS = (accuracy, crash, overhead, servers, scaling, alie)
RUN_ORDER = (crash, alie, servers, overhead, scaling, accuracy)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (5-minute {five:.1f})"


def _timing_line(values: list[float], what: str) -> str:
    if not values:
        return f"{what}: none"
    return (f"{what}: {len(values)}, {statistics.median(values):.1f} s median each "
            f"({min(values):.1f}-{max(values):.1f} s), {sum(values):.0f} s in all")


def _recorded_run(work: Path) -> dict[str, Any] | None:
    """The header figures of the complete run that saved the results in `work` (RUN_RECORD), if any."""
    try:
        record = json.loads((work / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None
    keys = ("date", "wall", "sim_wall", "real_wall", "load_before", "load_after", "timings")
    if not isinstance(record, dict) or not all(k in record for k in keys) or not isinstance(record["timings"], dict):
        return None
    return record


def build(grid: Grid, output_dir: Path, work_dir: Path | None = None, log: Callable[[str], None] = print,
          saved_only: bool = False) -> Path:
    """Run the report's jobs on `grid` and write `<output_dir>/resilience.md` and its PNGs; returns the markdown's path."""
    started = time.monotonic()
    load_before = _load()
    output_dir.mkdir(parents=True, exist_ok=True)
    own_work = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="garfield-report-")) if work_dir is None else work_dir
    try:
        runner = Runner(work, jobs=grid.jobs, log=log, saved_only=saved_only)
        # The findings' jobs first (a stopped run still has them), then the rest of the grid.
        requests: list[JobRequest] = [r for module in RUN_ORDER for r in module.requests(grid)]
        unique = {r.key: r for r in requests}
        sims = sum(1 for r in unique.values() if not r.real)
        log(f"garfield report ({grid.name}): {sims} simulations ({grid.jobs} at a time), "
            f"{len(unique) - sims} real runs")
        phase = time.monotonic()
        runner.run([r for r in unique.values() if not r.real])
        sim_wall = time.monotonic() - phase
        phase = time.monotonic()
        runner.run([r for r in unique.values() if r.real])
        real_wall = time.monotonic() - phase
        missing = [r for r in unique.values() if r.key not in runner.results]
        sections: list[Section] = [module.render(grid, runner, output_dir) for module in SECTIONS]
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    invalid = sorted({str(r.get("message")) for r in runner.results.values() if r.get("outcome") == "invalid"})
    failed = [r for r in runner.results.values() if r.get("outcome") not in ("succeeded", "invalid")]
    run: dict[str, Any] = {"date": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M}", "wall": time.monotonic() - started,
           "sim_wall": sim_wall, "real_wall": real_wall, "load_before": load_before, "load_after": _load(),
           "timings": runner.timings}
    rerendered = ""
    if saved_only:  # the timings are the run's that saved these results, when it finished and recorded them
        recorded = _recorded_run(work)
        if recorded is not None and not missing:
            run, rerendered = recorded, " (re-rendered with --saved-only from its saved results)"
    elif not own_work and not missing:
        (work / RUN_RECORD).write_text(json.dumps(run))
    wall = float(run["wall"])
    verdicts = [s for s in sections if s.verdict]
    partial = ([f"**Partial report: {len(missing)} of {len(unique)} jobs have no result** (rendered from the results saved "
                "so far with --saved-only; their cells read n/a and the verdicts rest on what ran).", ""]
               if missing else [])
    lines = [
        "# The cost of Byzantine resilience: Garfield's findings, reproduced",
        "",
        *partial,
        f"Written by `garfield report` ({grid.describe()}) on {run['date']} UTC{rerendered}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. **Wall time {wall / 60:.1f} min** "
        f"({float(run['sim_wall']):.0f} s simulating, {float(run['real_wall']):.0f} s of real runs). 1-minute load average "
        f"{run['load_before']} before, {run['load_after']} after: other work shares these cores, so absolute speeds vary "
        "with it (ratios and CPU per step much less).",
        "",
        f"* {_timing_line(run['timings']['simulate'], 'simulations (`garfield simulate`, one process each)')}",
        f"* {_timing_line(run['timings']['run'], 'real runs (`garfield run`, one at a time after the simulations)')}",
        f"* configurations validation refuses (shown as n/a): {len(invalid)} distinct reasons"
        + ("; jobs that failed: " + str(len(failed)) if failed else "; no job failed"),
        "",
        "Data: the shipped MNIST subset (`garfield/data/mnist5k.npz`), the examples' models (`garfield.tasks.mnist`). "
        "The paper: Guerraoui et al., *Garfield: System Support for Byzantine Machine Learning*, DSN 2021.",
        "",
        "## Verdicts",
        "",
        *[f"* {s.title}: {s.verdict}" for s in verdicts],
        "",
    ]
    for section in sections:
        lines += [f"## {section.title}", "", section.body, ""]
    if invalid:
        lines += ["## Refused configurations", "", *[f"* {reason}" for reason in invalid], ""]
    path = output_dir / MARKDOWN
    path.write_text("\n".join(lines))
    log(f"wrote {path} in {time.monotonic() - started:.0f} s")
    return path


def report_cli(args: argparse.Namespace) -> int:
    """Entry point of `garfield report`."""
    grid = GRIDS["tiny" if args.tiny else args.grid]
    if args.jobs is not None:
        grid = dataclasses.replace(grid, jobs=args.jobs)
    try:
        if args.saved_only and not args.work_dir:
            print("garfield report: --saved-only needs --work-dir", file=sys.stderr)
            return 2
        build(grid, Path(args.output_dir), Path(args.work_dir) if args.work_dir else None, saved_only=args.saved_only)
    except KeyboardInterrupt:
        print("garfield report: interrupted", file=sys.stderr)
        return 130
    return 0
