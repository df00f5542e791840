"""One reading of nodes' `/status` replies (docs/design.md, Observability contract), for every reader.

The local launcher's progress bar and the operator's `status.progress` both summarise the correct
servers' (peers', when decentralized) replies; they do it here, so `garfield run` and `kubectl get btj`
never disagree about the same replies.

Semantics, the operator's (chosen over the launcher's former per-field medians):
* the summary is the reply with the median step (the lower median for an even count), taken whole:
  its step, loss, accuracy, speed and rejected count describe one server at one moment, and a step that
  a server really reached. Per-field medians mixed a loss from one server with an accuracy from another
  (and averaged two steps into one nobody reached). Either way one lagging or lying reply moves nothing;
* replies are untrusted input: a field that is not a finite number (NaN, infinities, booleans, strings)
  is dropped from that reply, so it can never become a JSON NaN in a Kubernetes status (the API server
  refuses it) nor a "nan" on the bar; rejected counts add up only finite, non-negative values. A reply
  without a finite step is not usable at all;
* across the usable replies, the summary also keeps how many reported and the spread of their
  accuracies (the bar shows it; the operator does not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping


def finite(value: Any) -> float | None:
    """`value` as a float when it is a finite number (bools are not numbers here), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class StatusReply:
    """The fields of one `/status` reply that summaries use, each None where the reply had no usable value."""

    step: int | None
    loss: float | None
    accuracy: float | None
    steps_per_second: float | None
    rejected: int | None  # total of the {reason: count} map; None when the reply has no such map
    phase: str | None


def parse_status(reply: Mapping[str, Any]) -> StatusReply:
    """The usable fields of one reply (see the module docstring for what counts as usable)."""
    step = finite(reply.get("step"))
    rejected = reply.get("rejected")
    counts = None
    if isinstance(rejected, dict):
        counts = [n for n in map(finite, rejected.values()) if n is not None and n >= 0]
    phase = reply.get("phase")
    return StatusReply(
        step=int(step) if step is not None else None,
        loss=finite(reply.get("loss")),
        accuracy=finite(reply.get("accuracy")),
        steps_per_second=finite(reply.get("steps_per_second")),
        rejected=int(sum(counts)) if counts is not None else None,
        phase=phase if isinstance(phase, str) else None,
    )


@dataclass(frozen=True)
class StatusSummary:
    """The median-step reply's fields, plus what the usable replies say together."""

    step: int
    loss: float | None
    accuracy: float | None
    steps_per_second: float | None
    rejected: int | None
    reporting: int  # usable replies (a finite step)
    accuracy_range: tuple[float, float] | None  # (lowest, highest) finite accuracy among them


def summarize(replies: Iterable[Mapping[str, Any]]) -> StatusSummary | None:
    """The summary of the correct servers' replies; None when no reply is usable."""
    usable = [r for r in map(parse_status, replies) if r.step is not None]
    if not usable:
        return None
    usable.sort(key=lambda r: r.step or 0)  # stable: equal steps keep their order
    mid = usable[(len(usable) - 1) // 2]
    accuracies = [r.accuracy for r in usable if r.accuracy is not None]
    return StatusSummary(
        step=mid.step or 0, loss=mid.loss, accuracy=mid.accuracy, steps_per_second=mid.steps_per_second,
        rejected=mid.rejected, reporting=len(usable),
        accuracy_range=(min(accuracies), max(accuracies)) if accuracies else None,
    )
