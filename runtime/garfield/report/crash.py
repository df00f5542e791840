"""Finding (a): no fault vs f crashed workers (averaging the first n - f replies) vs f Byzantine
workers (each robust rule): accuracy and steps (and simulated seconds) to reach 90%."""

from __future__ import annotations

import statistics
from pathlib import Path

from garfield.report import plots
from garfield.report.common import Section, Stats, accuracy, attack, pts, results, seeded, stats, table
from garfield.report.grid import Grid, Knobs
from garfield.report.jobs import JobRequest, Runner

PLOT = "resilience-crash-vs-byzantine.png"
TARGET = 0.9
BYZANTINE = ("ALIE", "sign flip")


def _knobs(grid: Grid, rule: str, f: int, label: str) -> Knobs:
    return Knobs(workers=grid.workers, f_w=f, gar=rule, attack=attack(label), momentum="worker",
                 steps=grid.a_steps, eval_interval=grid.a_eval_interval)


def configs(grid: Grid) -> list[tuple[str, Knobs]]:
    rows = [("no fault: average, f = 0", _knobs(grid, "average", 0, "none")),
            (f"{grid.f} crashed: average of the first n - f", _knobs(grid, "average", grid.f, "crash"))]
    for rule in grid.a_rules:
        rows.append((f"`{rule}`, no fault", _knobs(grid, rule, grid.f, "none")))
        for label in BYZANTINE:
            rows.append((f"`{rule}`, {grid.f} Byzantine ({label})", _knobs(grid, rule, grid.f, label)))
    return rows


def requests(grid: Grid) -> list[JobRequest]:
    return [r for _, k in configs(grid) for r in seeded(grid, k)]


def _reach(runner: Runner, requests: list[JobRequest]) -> tuple[Stats, Stats, int]:
    """Steps and simulated seconds to the first evaluation at >= 90%, over the seeds that got there."""
    steps: list[float | None] = []
    secs: list[float | None] = []
    reached = 0
    for r in results(runner, requests):
        hit = next((h for h in r.get("history") or [] if h[1] >= TARGET), None)
        if hit is not None:
            reached += 1
            steps.append(float(hit[0]))
            secs.append(float(hit[2]))
    return stats(steps), stats(secs), reached


def _neg(x: float | None) -> float | None:
    return None if x is None else -x


def render(grid: Grid, runner: Runner, out: Path) -> Section:
    rows, labels, means, sds = [], [], [], []
    acc: dict[str, Stats] = {}
    for label, k in configs(grid):
        reqs = seeded(grid, k)
        a = accuracy(runner, reqs)
        acc[label] = a
        steps, secs, reached = _reach(runner, reqs)
        shown = (f"{steps.mean:.0f} ({secs.mean:.1f} s)" if steps.mean is not None else "not reached")
        rows.append([label, a.pct(), shown, f"{reached}/{len(reqs)}"])
        labels.append(label.replace("`", ""))
        means.append(None if a.mean is None else 100 * a.mean)
        sds.append(None if a.sd is None else 100 * a.sd)
    plots.bars(out / PLOT, labels, [("final accuracy %", means, sds)], "accuracy %",
               f"no fault vs crashes vs Byzantine workers ({grid.a_steps} steps, n = {grid.workers}, f = {grid.f})",
               ylim=(0, 100))
    names = [label for label, _ in configs(grid)]
    base, crashed = acc[names[0]].mean, acc[names[1]].mean
    crash_cost = None if base is None or crashed is None else base - crashed
    clean, attacked = [], []
    for rule in grid.a_rules:
        c = acc[f"`{rule}`, no fault"].mean
        worst = [acc[f"`{rule}`, {grid.f} Byzantine ({b})"].mean for b in BYZANTINE]
        if base is not None and c is not None:
            clean.append(base - c)
        if base is not None and all(w is not None for w in worst):
            attacked.append(base - min(w for w in worst if w is not None))
    clean_cost = statistics.mean(clean) if clean else None
    attack_cost = statistics.mean(attacked) if attacked else None
    crash_free = crash_cost is not None and crash_cost <= 0.01
    if crash_free and clean_cost is not None and attack_cost is not None and clean_cost >= 0.01 and attack_cost >= 0.01:
        verdict = "reproduces"
    elif crash_free and ((clean_cost or 0) >= 0.01 or (attack_cost or 0) >= 0.01):
        verdict = "partly reproduces"
    else:
        verdict = "refutes"
    evidence = (f"**Verdict: this project {verdict} claim (a)** (Byzantine resilience costs accuracy, crash resilience "
                f"does not). Final accuracy against the no-fault average ({acc[names[0]].pct(False)}%): {grid.f} crashed workers "
                f"{pts(_neg(crash_cost))}; the robust rules with no fault {pts(_neg(clean_cost))} on average over {len(clean)} "
                f"rules, and under the worse of {' / '.join(BYZANTINE)} {pts(_neg(attack_cost))} on average (verdict "
                "thresholds: a cost of 1 point).")
    body = "\n".join([
        f"`garfield simulate`, SSMW, {grid.workers} workers, worker-side momentum, {grid.a_steps} steps, evaluated every "
        f"{grid.a_eval_interval} steps; seeds {list(grid.seeds)}. Crash: f workers silent from step 0, the server averages "
        "the first n - f replies. Steps to 90%: the first evaluation at >= 90% (mean over the seeds that got there); the "
        "seconds are the simulation's own (all replicas take turns on one core: a relative measure only).",
        "",
        table(["configuration", "final accuracy %", "steps to 90% (simulated s)", "seeds reaching 90%"], rows),
        "",
        f"![crash vs Byzantine]({PLOT})",
        "",
        evidence,
    ])
    return Section("2. Finding (a): crash resilience vs Byzantine resilience", body, verdict=evidence, plots=[PLOT])
