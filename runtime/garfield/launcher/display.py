"""What `garfield run` shows while a job runs: a live bar on a terminal, plain progress lines otherwise.

Only presentation lives here: the numbers come from `garfield.observability.status.summarize` (the
operator's summary too), over the correct servers' latest `/status` replies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, TextIO

from garfield.observability.status import summarize

LINE_INTERVAL = 5.0  # seconds between plain progress lines


@dataclass(frozen=True)
class Progress:
    """What the bar shows, from the correct servers' latest statuses."""

    step: int
    total_steps: int
    loss: float | None
    accuracy: float | None
    accuracy_range: tuple[float, float] | None
    steps_per_second: float | None
    rejected: int
    reporting: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


def progress_of(statuses: Sequence[Mapping[str, Any]], total_steps: int) -> Progress:
    """The bar's numbers: the shared summary (the median-step reply), step 0 while nobody reports."""
    s = summarize(statuses)
    if s is None:
        return Progress(0, total_steps, None, None, None, None, 0, 0)
    return Progress(step=s.step, total_steps=total_steps, loss=s.loss, accuracy=s.accuracy,
                    accuracy_range=s.accuracy_range, steps_per_second=s.steps_per_second,
                    rejected=s.rejected or 0, reporting=s.reporting)


def format_line(p: Progress, elapsed: float, width: int = 24) -> str:
    """One line: ``[#####-----] step 120/600 loss 0.41 acc 91.2% (90.8-91.5) 7.9 steps/s rejected 240 0:42``."""
    filled = int(round(p.fraction * width))
    bar = "#" * filled + "-" * (width - filled)
    parts = [f"[{bar}] step {p.step}/{p.total_steps}"]
    parts.append(f"loss {p.loss:.4f}" if p.loss is not None else "loss -")
    if p.accuracy is not None and p.accuracy_range is not None:
        lo, hi = p.accuracy_range
        spread = f" ({lo:.1%}-{hi:.1%})" if p.reporting > 1 and hi - lo >= 0.0005 else ""
        parts.append(f"acc {p.accuracy:.1%}{spread}")
    else:
        parts.append("acc -")
    parts.append(f"{p.steps_per_second:.2f} steps/s" if p.steps_per_second is not None else "- steps/s")
    parts.append(f"rejected {p.rejected}")
    minutes, seconds = divmod(int(elapsed), 60)
    parts.append(f"{minutes}:{seconds:02d}")
    return " ".join(parts)


class Display:
    """A live bar on a terminal, plain lines otherwise (logs, CI, --no-progress), nothing when quiet."""

    def __init__(self, stream: TextIO | None, live: bool) -> None:
        self.stream = stream
        self.live = live
        self._last_line = 0.0
        self._last_step = -1
        self._shown = False

    def update(self, progress: Progress, elapsed: float, force: bool = False) -> None:
        if self.stream is None:
            return
        line = format_line(progress, elapsed)
        if self.live:
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()
            self._shown = True
        elif force or (progress.step != self._last_step and time.monotonic() - self._last_line >= LINE_INTERVAL):
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_line = time.monotonic()
            self._last_step = progress.step

    def message(self, text: str) -> None:
        if self.stream is None:
            return
        if self.live and self._shown:
            self.stream.write("\n")
            self._shown = False
        self.stream.write(text + "\n")
        self.stream.flush()
