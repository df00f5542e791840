"""Section 1: accuracy per rule x attack x momentum mode (simulated, over the grid's seeds)."""

from __future__ import annotations

from pathlib import Path

from garfield.report import plots
from garfield.report.common import Section, Stats, accuracy, attack, seeded, table
from garfield.report.grid import MODES, Grid, Knobs
from garfield.report.jobs import JobRequest, Runner

PLOT = "resilience-accuracy.png"


def knobs(grid: Grid, rule: str, label: str, mode: str, pre: tuple[str, ...] = ()) -> Knobs:
    return Knobs(workers=grid.workers, f_w=grid.f, gar=rule, pre=pre, attack=attack(label), momentum=mode,
                 steps=grid.steps, eval_interval=grid.eval_interval)


def requests(grid: Grid) -> list[JobRequest]:
    return [r for rule in grid.rules for label in grid.attacks for mode in MODES
            for r in seeded(grid, knobs(grid, rule, label, mode))]


def cell(runner: Runner, grid: Grid, rule: str, label: str, mode: str) -> Stats:
    return accuracy(runner, seeded(grid, knobs(grid, rule, label, mode)))


def render(grid: Grid, runner: Runner, out: Path) -> Section:
    header = ["rule", "momentum"] + list(grid.attacks)
    rows = []
    panels = []
    for mode in MODES:
        values = []
        marks = []
        for rule in grid.rules:
            cells = [cell(runner, grid, rule, label, mode) for label in grid.attacks]
            rows.append([f"`{rule}`", mode] + [c.pct() for c in cells])
            values.append([c.mean for c in cells])
            marks.append([c.mark() for c in cells])
        panels.append((f"momentum on the {mode}s", values, marks))
    plots.heatmaps(out / PLOT, panels, list(grid.rules), list(grid.attacks),
                   f"final accuracy (mean of {len(grid.seeds)} seeds), SSMW, n = {grid.workers}, f = {grid.f}")
    notes = []
    if "ALIE" in grid.attacks:
        server = {rule: cell(runner, grid, rule, "ALIE", "server") for rule in grid.rules}
        worker = {rule: cell(runner, grid, rule, "ALIE", "worker") for rule in grid.rules}
        collapsed = [r for r, s in server.items() if s.mean is not None and s.mean < 0.8]
        notes.append("* **A Little Is Enough with server-side momentum**: " + ", ".join(
            f"`{r}` {server[r].pct(False)}% (worker-side {worker[r].pct(False)}%)" for r in grid.rules)
            + f". Below 80% with server-side momentum: {', '.join(f'`{r}`' for r in collapsed) or 'none'} of "
              f"{len(grid.rules)} rules" + (" - every rule collapses." if len(collapsed) == len(grid.rules) else ".")
            + f" (z_max from n and f is mild on these sizes; section 6 runs ALIE where it does harm: z = {grid.alie_z:g}, "
              f"{grid.alie_workers} workers, {grid.alie_steps} steps.)")
    if "FoE eps=0.1" in grid.attacks and "krum" in grid.rules:
        small = {mode: cell(runner, grid, "krum", "FoE eps=0.1", mode) for mode in MODES}
        none = {mode: cell(runner, grid, "krum", "none", mode) for mode in MODES}
        notes.append("* **Fall of Empires with a small epsilon (0.1) against Krum**: " + "; ".join(
            f"{mode}-side momentum {small[mode].pct()}% against {none[mode].pct()}% without attack" for mode in MODES) + ".")
    body = "\n".join([
        f"`garfield simulate` of SSMW jobs (MNIST perceptron, 1 server, {grid.workers} workers of which f = {grid.f} run the "
        f"attack, the server's rule on the first n - f = {grid.workers - grid.f} replies with the attackers in every quorum), "
        f"{grid.steps} steps, batch 32, momentum 0.9 either on the workers (`training.workerMomentum`) or in the server's "
        f"optimizer. Final test accuracy in %, mean ± standard deviation over seeds {list(grid.seeds)}; \"training failed\": "
        "the attack broke the job (the server stopped: its model went non-finite), counted apart, not as 0%. "
        "Attacks: sign flip (x10), Fall of Empires (FoE, epsilon 0.1 and 10), A Little Is Enough (ALIE, z_max from n and f), "
        "label flip, random (uniform, scale 10), crash (silent from step 0).",
        "",
        table(header, rows),
        "",
        f"![accuracy heat map]({PLOT})",
        "",
        "Known results, kept visible:",
        "",
        *notes,
    ])
    return Section("1. Accuracy per rule, attack and momentum mode", body, plots=[PLOT])
