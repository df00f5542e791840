"""The one `/status` summary (garfield.observability.status), as the launcher's bar and the operator's
status.progress both see it: the median-step reply taken whole, untrusted values dropped."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pytest

from garfield.launcher.display import format_line, progress_of
from garfield.observability.status import StatusSummary, parse_status, summarize

from garfield_operator.status import summarize_progress

NAN, INF = float("nan"), float("inf")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def summary(step: int, loss: float | None = None, accuracy: float | None = None, speed: float | None = None,
            rejected: int | None = None, reporting: int = 1,
            spread: tuple[float, float] | None = None) -> StatusSummary:
    return StatusSummary(step, loss, accuracy, speed, rejected, reporting, spread)


TABLE: list[tuple[str, list[dict[str, Any]], StatusSummary | None]] = [
    ("no replies", [], None),
    ("no usable step", [{"step": "ten"}, {"step": NAN}, {"step": True}, {}], None),
    ("one reply", [{"step": 3, "loss": 0.5, "accuracy": 0.9, "steps_per_second": 2.0, "rejected": {"stale": 1}}],
     summary(3, 0.5, 0.9, 2.0, 1, spread=(0.9, 0.9))),
    ("the median-step reply, taken whole (not per-field medians)",
     [{"step": 10, "loss": 1.0, "accuracy": 0.5}, {"step": 12, "loss": 0.2, "accuracy": 0.6},
      {"step": 11, "loss": 0.9, "accuracy": 0.7}],
     summary(11, 0.9, 0.7, reporting=3, spread=(0.5, 0.7))),
    ("even count: the lower median, a step somebody reached", [{"step": 10}, {"step": 20}], summary(10, reporting=2)),
    ("a lying step moves nothing",
     [{"step": 10, "accuracy": 0.5}, {"step": 12, "accuracy": 0.6}, {"step": 10 ** 9, "loss": -1, "accuracy": 1.0}],
     summary(12, accuracy=0.6, reporting=3, spread=(0.5, 1.0))),
    ("non-finite and non-numeric fields are dropped from the reply",
     [{"step": 3, "loss": INF, "accuracy": True, "steps_per_second": "fast", "rejected": {"x": -4, "y": "z", "w": NAN}}],
     summary(3, rejected=0)),
    ("a float step counts, truncated", [{"step": 7.9, "loss": NAN}], summary(7)),
    ("rejected counts add up the median reply's finite, non-negative ones",
     [{"step": 5, "rejected": {"stale": 2, "nan": 3, "bad": -1}}, {"step": 9, "rejected": {"stale": 100}}, {"step": 1}],
     summary(5, rejected=5, reporting=3)),
    ("no rejected map: no count", [{"step": 2, "rejected": [1, 2]}], summary(2)),
]


@pytest.mark.parametrize("replies, expected", [(r, e) for _, r, e in TABLE], ids=[name for name, _, _ in TABLE])
def test_summary_table(replies: list[dict[str, Any]], expected: StatusSummary | None) -> None:
    assert summarize(replies) == expected


@pytest.mark.parametrize("replies", [r for _, r, _ in TABLE], ids=[name for name, _, _ in TABLE])
def test_operator_progress_never_holds_nan_and_matches_the_summary(replies: list[dict[str, Any]]) -> None:
    out = summarize_progress(replies, NOW)
    expected = summarize(replies)
    if expected is None:
        assert out is None
        return
    assert out is not None
    json.dumps(out, allow_nan=False)  # the API server refuses NaN: it must never be produced
    assert out["step"] == expected.step
    assert out.get("loss") == expected.loss and out.get("accuracy") == expected.accuracy
    assert out.get("rejectedMessages") == expected.rejected


@pytest.mark.parametrize("replies", [r for _, r, _ in TABLE], ids=[name for name, _, _ in TABLE])
def test_the_launcher_bar_shows_the_same_summary(replies: list[dict[str, Any]]) -> None:
    progress = progress_of(replies, 100)
    expected = summarize(replies)
    assert progress.step == (expected.step if expected else 0)
    assert progress.loss == (expected.loss if expected else None)
    assert "nan" not in format_line(progress, 1.0)


def test_parse_status_keeps_the_phase_only_when_it_is_text() -> None:
    assert parse_status({"phase": "done"}).phase == "done"
    assert parse_status({"phase": 3}).phase is None
    assert math.isfinite(parse_status({"loss": 1e308}).loss or 0)
