"""Scaling: steps/s and CPU per step against the number of workers and f (real runs, SSMW, mda)."""

from __future__ import annotations

from pathlib import Path

from garfield.report import plots
from garfield.report.common import Section, table
from garfield.report.grid import Grid, Knobs
from garfield.report.jobs import JobRequest, Runner

PLOT = "resilience-scaling.png"


def _knobs(grid: Grid, n: int, f: int) -> Knobs:
    return Knobs(workers=n, f_w=f, gar="mda", steps=grid.scaling_steps, eval_interval=0)


def requests(grid: Grid) -> list[JobRequest]:
    return [JobRequest(_knobs(grid, n, f), real=True) for n in grid.scaling_workers for f in grid.scaling_f]


def render(grid: Grid, runner: Runner, out: Path) -> Section:
    rows = []
    speed: dict[int, tuple[list[float], list[float]]] = {}
    cpu: dict[int, tuple[list[float], list[float]]] = {}
    for n in grid.scaling_workers:
        row = [str(n)]
        for f in grid.scaling_f:
            r = runner.get(JobRequest(_knobs(grid, n, f), real=True))
            sps, c = r.get("steps_per_second"), r.get("cpu_ms_per_step")
            if r.get("outcome") == "invalid":
                row.append("not valid (mda needs n - f >= 2f + 1)")
                continue
            if not isinstance(sps, (int, float)):
                row.append(f"{r.get('outcome')}")
                continue
            row.append(f"{sps:.1f} steps/s, " + (f"{c:.0f} CPU ms" if isinstance(c, (int, float)) else "CPU n/a"))
            speed.setdefault(f, ([], []))[0].append(n)
            speed[f][1].append(sps)
            if isinstance(c, (int, float)):
                cpu.setdefault(f, ([], []))[0].append(n)
                cpu[f][1].append(c)
        rows.append(row)
    plots.lines(out / PLOT, [(f"steps/s, f = {f}", xs, ys) for f, (xs, ys) in sorted(speed.items())], "workers",
                "steps/s", f"SSMW, mda, real runs ({grid.scaling_steps} steps)",
                right=[(f"CPU ms/step, f = {f}", xs, ys) for f, (xs, ys) in sorted(cpu.items())], right_label="CPU ms/step")
    body = "\n".join([
        f"Real runs (`garfield run`), SSMW, mda on the server over the first n - f replies, {grid.scaling_steps} steps, MLP, "
        "no attack; one run per cell. steps/s: the server's own figure; CPU ms/step: every replica's CPU (user + system, "
        "psutil) from the first reported step on, per step. All replicas share this machine's cores, so steps/s falls with "
        "n mostly because the workers' CPU adds up on 2 cores (CPU-bound), not because of the protocol.",
        "",
        table(["workers"] + [f"f = {f}" for f in grid.scaling_f], rows),
        "",
        f"![scaling]({PLOT})",
    ])
    return Section("5. Scaling with the number of workers and f", body, plots=[PLOT])
