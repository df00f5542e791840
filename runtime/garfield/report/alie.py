"""Which rule + pre-aggregation + momentum mode holds best under A Little Is Enough (simulated)."""

from __future__ import annotations

from pathlib import Path

from garfield.report import plots
from garfield.report.accuracy import knobs
from garfield.report.common import Section, Stats, accuracy, seeded, table
from garfield.report.grid import MODES, Grid, Knobs, chain_label
from garfield.report.jobs import JobRequest, Runner

PLOT = "resilience-alie.png"

Combo = tuple[str, tuple[str, ...], str]


def combos(grid: Grid) -> list[Combo]:
    found = [(rule, pre, mode) for rule in grid.alie_rules for pre in grid.pre_chains for mode in MODES]
    return found + [("average", (), mode) for mode in MODES]


def known_knobs(grid: Grid, rule: str, mode: str) -> Knobs:
    """The earlier measurement's setting (docs/attacks.md), where server-side momentum was seen to fail under ALIE:
    a fixed z, fewer workers, longer training."""
    return Knobs(workers=grid.alie_known_workers, f_w=grid.f, gar=rule, attack=("little", {"z": grid.alie_known_z}),
                 momentum=mode, steps=grid.alie_known_steps, eval_interval=max(1, grid.alie_known_steps // 6))


def requests(grid: Grid) -> list[JobRequest]:
    found = [r for rule, pre, mode in combos(grid) for r in seeded(grid, knobs(grid, rule, "ALIE", mode, pre))]
    return found + [r for rule in grid.alie_known_rules for mode in MODES for r in seeded(grid, known_knobs(grid, rule, mode))]


def known(grid: Grid, runner: Runner) -> tuple[str, str]:
    """The earlier setting's table, and one line on whether server-side momentum collapses there."""
    acc = {(rule, mode): accuracy(runner, seeded(grid, known_knobs(grid, rule, mode)))
           for rule in grid.alie_known_rules for mode in MODES}
    rows = []
    for rule in grid.alie_known_rules:
        w, sv = acc[(rule, "worker")], acc[(rule, "server")]
        gap = None if w.mean is None or sv.mean is None else 100 * (w.mean - sv.mean)
        rows.append([f"`{rule}`", w.pct(), sv.pct(), "n/a" if gap is None else f"{gap:+.1f}"])
    collapsed = [r for r in grid.alie_known_rules if (acc[(r, "server")].mean or 1.0) < 0.8]
    worse = [r for r in grid.alie_known_rules
             if acc[(r, "server")].mean is not None and acc[(r, "worker")].mean is not None
             and (acc[(r, "worker")].mean or 0.0) - (acc[(r, "server")].mean or 0.0) >= 0.01]
    line = (f"At z = {grid.alie_known_z:g}, {grid.alie_known_workers} workers (f = {grid.f}), {grid.alie_known_steps} steps: "
            f"server-side momentum is at least 1 point worse than worker-side for {len(worse)} of "
            f"{len(grid.alie_known_rules)} rules, and below 80% for "
            + (f"{', '.join(f'`{r}`' for r in collapsed)}" if collapsed else "none")
            + (" - every rule collapses." if len(collapsed) == len(grid.alie_known_rules) else "."))
    body = "\n".join([
        f"**The earlier measurement's setting** (docs/attacks.md: ALIE with a fixed z = {grid.alie_known_z:g}, "
        f"{grid.alie_known_workers} workers of which f = {grid.f} attack, {grid.alie_known_steps} steps, seeds "
        f"{list(grid.seeds)}), where server-side momentum was seen to fail: final accuracy in %.",
        "",
        table(["rule", "worker-side momentum", "server-side momentum", "worker - server (pts)"], rows),
        "",
        line,
    ])
    return body, line


def _name(combo: Combo) -> str:
    rule, pre, mode = combo
    return f"{' -> '.join(pre) + ' -> ' if pre else ''}{rule}, {mode} momentum"


def render(grid: Grid, runner: Runner, out: Path) -> Section:
    acc: dict[Combo, Stats] = {c: accuracy(runner, seeded(grid, knobs(grid, c[0], "ALIE", c[2], c[1]))) for c in combos(grid)}
    rows = []
    for rule in grid.alie_rules:
        for pre in grid.pre_chains:
            rows.append([f"`{rule}`", chain_label(pre), *[acc[(rule, pre, mode)].pct() for mode in MODES]])
    rows.append(["`average`", "-", *[acc[("average", (), mode)].pct() for mode in MODES]])
    ranked = sorted((c for c in acc if acc[c].mean is not None and c[0] != "average"),
                    key=lambda c: acc[c].mean or 0.0, reverse=True)
    plain = [c for c in ranked if not c[1]]
    best = ranked[0] if ranked else None
    best_plain = plain[0] if plain else None
    labels = [chain_label(pre) for pre in grid.pre_chains]
    series = []
    for rule in grid.alie_rules:
        for mode in MODES:
            stats = [acc[(rule, pre, mode)] for pre in grid.pre_chains]
            series.append((f"{rule}, {mode}", [None if s.mean is None else 100 * s.mean for s in stats],
                           [None if s.sd is None else 100 * s.sd for s in stats]))
    plots.bars(out / PLOT, labels, series, "accuracy %", f"under ALIE, by pre-aggregation ({grid.steps} steps, "
               f"n = {grid.workers}, f = {grid.f})", ylim=(0, 100))
    if best is not None:
        mode = best[2]
        avg = acc[("average", (), mode)]
        summary = (f"**Best under A Little Is Enough: {_name(best)}, {acc[best].pct()}%**, against plain averaging "
                   f"{avg.pct()}% ({mode} momentum; {acc[('average', (), 'server' if mode == 'worker' else 'worker')].pct()}% "
                   f"with the other mode) and against the best rule without pre-aggregation, "
                   + (f"{_name(best_plain)}, {acc[best_plain].pct()}%." if best_plain else "n/a."))
        if best_plain is not None and acc[best].mean is not None and acc[best_plain].mean is not None:
            gap = (acc[best].mean or 0.0) - (acc[best_plain].mean or 0.0)
            summary += (f" The pre-aggregation adds {100 * gap:+.1f} points" +
                        (" - within the seeds' spread." if acc[best].sd is not None and abs(gap) <= (acc[best].sd or 0) else "."))
    else:
        summary = "No combination ran."
    known_body, known_line = known(grid, runner)
    body = "\n".join([
        f"ALIE (z_max from n and f) on f = {grid.f} of {grid.workers} workers, SSMW, {grid.steps} steps, seeds "
        f"{list(grid.seeds)}: final accuracy in %, per rule, pre-aggregation chain (in front of the rule, "
        "`gar.preAggregation`) and momentum mode. 'n/a' with a reason: validation refuses the chain on these sizes "
        f"(bucketing with s = 2 hands ceil({grid.workers - grid.f}/2) = {-(-(grid.workers - grid.f) // 2)} vectors on, with "
        f"f = {grid.f} still to tolerate).",
        "",
        table(["rule", "pre-aggregation", *[f"{m}-side momentum" for m in MODES]], rows),
        "",
        f"![ALIE by pre-aggregation]({PLOT})",
        "",
        summary,
        "",
        known_body,
    ])
    return Section("6. What holds under A Little Is Enough", body, verdict=f"{summary} {known_line}", plots=[PLOT])
