"""Which rule + pre-aggregation + momentum mode holds best under A Little Is Enough (simulated).

Ranked in the setting where ALIE does harm here: the earlier measurement's (docs/attacks.md), a
fixed z = 1 on 2 of 7 workers over 300 steps. With z_max from n and f (section 1: z = 0.43 on
9 workers, 100 steps) the attack is too mild to move even plain averaging, so a ranking there
would only rank the seeds' noise.
"""

from __future__ import annotations

from pathlib import Path

from garfield.report import plots
from garfield.report.common import Section, Stats, accuracy, seeded, table
from garfield.report.grid import MODES, Grid, Knobs, chain_label
from garfield.report.jobs import JobRequest, Runner

PLOT = "resilience-alie.png"

Combo = tuple[str, tuple[str, ...], str]


def combos(grid: Grid) -> list[Combo]:
    found = [(rule, pre, mode) for rule in grid.alie_rules for pre in grid.pre_chains for mode in MODES]
    return found + [("average", (), mode) for mode in MODES]


def alie_knobs(grid: Grid, rule: str, pre: tuple[str, ...], mode: str) -> Knobs:
    return Knobs(workers=grid.alie_workers, f_w=grid.f, gar=rule, pre=pre, attack=("little", {"z": grid.alie_z}),
                 momentum=mode, steps=grid.alie_steps, eval_interval=max(1, grid.alie_steps // 6))


def requests(grid: Grid) -> list[JobRequest]:
    return [r for rule, pre, mode in combos(grid) for r in seeded(grid, alie_knobs(grid, rule, pre, mode))]


def _name(combo: Combo) -> str:
    rule, pre, mode = combo
    return f"{' -> '.join(pre) + ' -> ' if pre else ''}{rule}, {mode} momentum"


def _gap(worker: Stats, server: Stats) -> float | None:
    return None if worker.mean is None or server.mean is None else worker.mean - server.mean


def render(grid: Grid, runner: Runner, out: Path) -> Section:
    acc: dict[Combo, Stats] = {c: accuracy(runner, seeded(grid, alie_knobs(grid, c[0], c[1], c[2]))) for c in combos(grid)}
    rows = []
    for rule, pre in [(rule, pre) for rule in grid.alie_rules for pre in grid.pre_chains] + [("average", ())]:
        worker, server = acc[(rule, pre, "worker")], acc[(rule, pre, "server")]
        gap = _gap(worker, server)
        rows.append([f"`{rule}`", chain_label(pre), worker.pct(), server.pct(), "n/a" if gap is None else f"{100 * gap:+.1f}"])
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
            if all(s.mean is None for s in stats):
                continue  # refused on these sizes in every chain: no bars to draw
            series.append((f"{rule}, {mode}", [None if s.mean is None else 100 * s.mean for s in stats],
                           [None if s.sd is None else 100 * s.sd for s in stats]))
    plots.bars(out / PLOT, labels, series, "accuracy %", f"under ALIE z = {grid.alie_z:g}, by pre-aggregation "
               f"({grid.alie_steps} steps, n = {grid.alie_workers}, f = {grid.f})", ylim=(0, 100))
    if best is not None:
        mode = best[2]
        other = "server" if mode == "worker" else "worker"
        avg = acc[("average", (), mode)]
        summary = (f"**Best under A Little Is Enough: {_name(best)}, {acc[best].pct()}%**, against plain averaging "
                   f"{avg.pct()}% ({mode} momentum; {acc[('average', (), other)].pct()}% with {other} momentum) and "
                   + ("no pre-aggregation stage does better in this mode." if best == best_plain else
                      "against the best rule without pre-aggregation, "
                      + (f"{_name(best_plain)}, {acc[best_plain].pct()}%." if best_plain else "n/a.")))
        if best != best_plain and best_plain is not None and acc[best].mean is not None and acc[best_plain].mean is not None:
            gain = (acc[best].mean or 0.0) - (acc[best_plain].mean or 0.0)
            spread = max(acc[best].sd or 0.0, acc[best_plain].sd or 0.0)
            summary += (f" The pre-aggregation adds {100 * gain:+.1f} points"
                        + (" - within the seeds' spread." if abs(gain) <= spread else "."))
        for mode_ in MODES:  # the pick per momentum mode: where the pre-aggregation earns its place
            in_mode = [c for c in ranked if c[2] == mode_]
            plain_in_mode = [c for c in in_mode if not c[1]]
            if in_mode and plain_in_mode and in_mode[0] != best:
                top, top_plain = in_mode[0], plain_in_mode[0]
                gain = (acc[top].mean or 0.0) - (acc[top_plain].mean or 0.0)
                summary += (f" With {mode_} momentum: {_name(top)}, {acc[top].pct()}%, against {_name(top_plain)}, "
                            f"{acc[top_plain].pct()}% ({100 * gain:+.1f} points).")
    else:
        summary = "No combination ran."
    plain_gaps = {rule: _gap(acc[(rule, (), "worker")], acc[(rule, (), "server")]) for rule in grid.alie_rules}
    worse = [r for r, g in plain_gaps.items() if g is not None and g >= 0.01]
    collapsed = [r for r in grid.alie_rules if (acc[(r, (), "server")].mean or 1.0) < 0.8]
    ran = [r for r, g in plain_gaps.items() if g is not None]
    momentum_line = (f"Without pre-aggregation, server-side momentum is at least 1 point worse than worker-side for "
                     f"{len(worse)} of the {len(ran)} rules that ran ({', '.join(f'`{r}`' for r in worse) or 'none'}), "
                     f"and below 80% for {', '.join(f'`{r}`' for r in collapsed) or 'none'}"
                     + (" - every rule collapses." if ran and len(collapsed) == len(ran) else "."))
    body = "\n".join([
        f"ALIE with a fixed z = {grid.alie_z:g} on f = {grid.f} of {grid.alie_workers} workers (the earlier measurement's "
        f"setting, docs/attacks.md, where ALIE does harm here: with z_max from n and f, section 1, it is too mild to move "
        f"plain averaging), SSMW, {grid.alie_steps} steps, seeds {list(grid.seeds)}: final accuracy in %, per rule, "
        "pre-aggregation chain (in front of the rule, `gar.preAggregation`) and momentum mode, and how much worker-side "
        "momentum keeps over server-side. 'n/a' with a reason: validation refuses the rule or the chain on these sizes "
        f"(the server aggregates the first n - f = {grid.alie_workers - grid.f} replies; bucketing with s = 2 hands "
        f"ceil({grid.alie_workers - grid.f}/2) = {-(-(grid.alie_workers - grid.f) // 2)} vectors on, with f = {grid.f} "
        "still to tolerate).",
        "",
        table(["rule", "pre-aggregation", "worker-side momentum", "server-side momentum", "worker - server (pts)"], rows),
        "",
        f"![ALIE by pre-aggregation]({PLOT})",
        "",
        summary,
        "",
        momentum_line,
    ])
    return Section("6. What holds under A Little Is Enough", body, verdict=f"{summary} {momentum_line}", plots=[PLOT])
