"""Finding (c): f Byzantine workers vs f Byzantine servers, the same budget (f = 1): accuracy
under attack (simulated, over seeds) and throughput (real runs, no attack)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from garfield.report import plots
from garfield.report.common import Section, Stats, accuracy, attack, seeded, table
from garfield.report.grid import Grid, Knobs
from garfield.report.jobs import JobRequest, Runner
from garfield.report.overhead import configs as overhead_configs

PLOT = "resilience-workers-vs-servers.png"
WORKER_ATTACKS = ("none", "sign flip", "ALIE")
SERVER_ATTACKS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "none": None, "random model": ("random", {}), "reversed model": ("reversed", {})}


def worker_side(grid: Grid, label: str, steps: int, eval_interval: int) -> Knobs:
    return Knobs(workers=grid.real_workers, f_w=1, gar="mda", attack=attack(label), steps=steps, eval_interval=eval_interval)


def server_side(grid: Grid, label: str, steps: int, eval_interval: int) -> Knobs:
    return Knobs(topology="msmw", servers=4, f_s=1, server_gar="median", workers=grid.real_workers, f_w=0, gar="average",
                 server_attack=SERVER_ATTACKS[label], steps=steps, eval_interval=eval_interval)


def _sim_eval(grid: Grid) -> int:
    return max(1, grid.c_steps // 6)


def requests(grid: Grid) -> list[JobRequest]:
    sims = [r for label in WORKER_ATTACKS for r in seeded(grid, worker_side(grid, label, grid.c_steps, _sim_eval(grid)))]
    sims += [r for label in SERVER_ATTACKS for r in seeded(grid, server_side(grid, label, grid.c_steps, _sim_eval(grid)))]
    reals = [JobRequest(worker_side(grid, "none", grid.real_steps, 0), real=True),
             JobRequest(server_side(grid, "none", grid.real_steps, 0), real=True)]
    return sims + reals


def render(grid: Grid, runner: Runner, out: Path) -> Section:
    vanilla = runner.get(JobRequest(overhead_configs(grid, "mlp")[0][1], real=True))
    w_real = runner.get(JobRequest(worker_side(grid, "none", grid.real_steps, 0), real=True))
    s_real = runner.get(JobRequest(server_side(grid, "none", grid.real_steps, 0), real=True))
    w_acc = {label: accuracy(runner, seeded(grid, worker_side(grid, label, grid.c_steps, _sim_eval(grid))))
             for label in WORKER_ATTACKS}
    s_acc = {label: accuracy(runner, seeded(grid, server_side(grid, label, grid.c_steps, _sim_eval(grid))))
             for label in SERVER_ATTACKS}

    def speed(r: dict[str, Any]) -> str:
        v = r.get("steps_per_second")
        return f"{v:.1f}" if isinstance(v, (int, float)) else f"n/a ({r.get('outcome')})"

    def cpu(r: dict[str, Any]) -> str:
        v = r.get("cpu_ms_per_step")
        return f"{v:.0f}" if isinstance(v, (int, float)) else "n/a"

    rows = [[f"f = 1 Byzantine worker: SSMW, 1 server, {grid.real_workers} workers, mda",
             speed(w_real), cpu(w_real), *[f"{k}: {v.pct()}" for k, v in w_acc.items()]],
            [f"f = 1 Byzantine server: MSMW, 4 servers (median), {grid.real_workers} correct workers (average)",
             speed(s_real), cpu(s_real), *[f"{k}: {v.pct()}" for k, v in s_acc.items()]]]
    rows.append([f"vanilla: SSMW, {grid.real_workers} workers, average, f = 0", speed(vanilla), cpu(vanilla), "", "", ""])

    def worst(d: dict[str, Stats]) -> float | None:
        means = [v.mean for v in d.values() if v.mean is not None]
        return min(means) if means else None

    labels = [f"workers: {k}" for k in WORKER_ATTACKS] + [f"servers: {k}" for k in SERVER_ATTACKS]
    values = [w_acc[k].mean for k in WORKER_ATTACKS] + [s_acc[k].mean for k in SERVER_ATTACKS]
    errors = [w_acc[k].sd for k in WORKER_ATTACKS] + [s_acc[k].sd for k in SERVER_ATTACKS]
    plots.bars(out / PLOT, labels, [("final accuracy %", [None if v is None else 100 * v for v in values],
                                     [None if e is None else 100 * e for e in errors])],
               "accuracy %", f"f = 1 Byzantine worker vs f = 1 Byzantine server ({grid.c_steps} steps)", ylim=(0, 100))
    tw, ts = w_real.get("steps_per_second"), s_real.get("steps_per_second")
    ww, ws = worst(w_acc), worst(s_acc)
    slower = isinstance(tw, (int, float)) and isinstance(ts, (int, float)) and ts < 0.9 * tw
    less_accurate = ww is not None and ws is not None and ws < ww - 0.01
    verdict = "reproduces" if slower and less_accurate else ("partly reproduces" if slower or less_accurate else "refutes")
    ratio = f"{ts / tw:.2f}" if isinstance(tw, (int, float)) and isinstance(ts, (int, float)) and tw else "n/a"
    evidence = (f"**Verdict: this project {verdict} claim (c)** (Byzantine servers cost more than Byzantine workers). "
                f"Throughput: tolerating one Byzantine server runs at {ratio} x the steps/s of tolerating one Byzantine "
                f"worker ({speed(s_real)} vs {speed(w_real)} steps/s, real runs); accuracy under the worst attack tried: "
                + (f"{100 * ws:.1f}% with a Byzantine server vs {100 * ww:.1f}% with a Byzantine worker"
                   if ww is not None and ws is not None else "n/a") + " (thresholds: 10% slower, 1 point less accurate).")
    body = "\n".join([
        "The same fault budget, f = 1, spent on one side: a Byzantine worker needs a robust rule on the server (SSMW, "
        "mda); a Byzantine server needs replicated servers (MSMW, 3f + 1 = 4, median over server models) while the workers "
        f"are all correct. Accuracy: `garfield simulate`, {grid.c_steps} steps, seeds {list(grid.seeds)}, the attacker in every "
        f"quorum (worker attacks: sign flip x10, ALIE; server attacks: a random model, the reversed model). Throughput and "
        f"CPU: one real run each (`garfield run`, {grid.real_steps} steps, no attack).",
        "",
        table(["configuration", "steps/s (real)", "CPU ms/step (real)", "accuracy %", "", ""], rows),
        "",
        f"![workers vs servers]({PLOT})",
        "",
        evidence,
    ])
    return Section("4. Finding (c): Byzantine workers vs Byzantine servers", body, verdict=evidence, plots=[PLOT])
