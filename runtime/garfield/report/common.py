"""What the report's sections share: their shape, statistics over seeds, formatting."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from typing import Iterable

from garfield.report.grid import ATTACKS, Grid, Knobs
from garfield.report.jobs import JobRequest, Result, Runner

# Why a job has no accuracy, as `why` words it (a cell's note starts with one), and the short mark
# a heat-map cell shows for it.
FAILED = "training failed"
REFUSED = "not valid"
NOT_RUN = "not run"
MARKS = {FAILED: "failed", REFUSED: "refused", NOT_RUN: "not run"}


@dataclass
class Section:
    title: str
    body: str
    verdict: str | None = None  # findings: "reproduces", "partly reproduces" or "refutes", with the evidence
    plots: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Stats:
    mean: float | None
    sd: float | None
    low: float | None
    high: float | None
    n: int
    failed: int  # seeds with no accuracy (training failed, invalid, not run)
    note: str = ""

    def pct(self, spread: bool = True) -> str:
        """'91.2 ± 0.8' in %, over the seeds that ran; the others counted with their reason: '90.1 (1 of 3 training
        failed)', 'n/a (3 of 3 training failed)'."""
        others = f"{self.failed} of {self.failed + self.n} {self.note}" if self.failed else ""
        if self.mean is None:
            return f"n/a ({others})" if others else "n/a"
        text = f"{100 * self.mean:.1f}"
        if spread and self.sd is not None and self.n > 1:
            text += f" ± {100 * self.sd:.1f}"
        return f"{text} ({others})" if others else text

    def mark(self) -> str:
        """What a heat-map cell with no accuracy shows: why every seed of it has none."""
        if self.mean is not None:
            return ""
        for reason, short in MARKS.items():
            if self.note.startswith(reason):
                return short
        return "n/a"


def seeded(grid: Grid, knobs: Knobs, real: bool = False) -> list[JobRequest]:
    return [JobRequest(dataclasses.replace(knobs, seed=seed), real) for seed in grid.seeds]


def results(runner: Runner, requests: Iterable[JobRequest]) -> list[Result]:
    return [runner.get(r) for r in requests]


def stats(values: list[float | None], notes: Iterable[str] = ()) -> Stats:
    got = [v for v in values if v is not None]
    failed = len(values) - len(got)
    note = next(iter(notes), "").replace("|", "/")
    note = note if len(note) <= 90 else note[:87] + "..."
    if not got:
        return Stats(None, None, None, None, 0, failed, note)
    sd = statistics.stdev(got) if len(got) > 1 else 0.0
    return Stats(statistics.mean(got), sd, min(got), max(got), len(got), failed, note)


def why(result: Result) -> str:
    """A short reason a job has no accuracy: it failed (the attack broke training: a server stopped), validation
    refused it, or it did not run."""
    outcome = result.get("outcome")
    if outcome == "failed":
        return FAILED
    if outcome == "invalid":
        return f"{REFUSED}: {result.get('message')}"
    if outcome == "missing":
        return NOT_RUN
    return str(outcome)


def accuracy(runner: Runner, requests: list[JobRequest]) -> Stats:
    rs = results(runner, requests)
    return stats([r.get("accuracy") if r.get("outcome") == "succeeded" else None for r in rs],
                 [why(r) for r in rs if r.get("outcome") != "succeeded"])


def attack(label: str) -> tuple[str, dict[str, object]] | None:
    return ATTACKS[label]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pts(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f} pts"
