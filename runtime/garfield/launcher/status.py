"""Reading the correct servers' `/status` (docs/design.md, observability contract) and summing it up.

The launcher never trusts a Byzantine replica's report: progress, accuracy and the final summary come
only from the correct servers (the correct peers in a decentralized job).
"""

from __future__ import annotations

import json
import statistics
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def fetch_status(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> dict[str, Any] | None:
    """The node's `/status` JSON, or None when it is not (yet, or any more) answering."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/status", timeout=timeout) as response:
            body = response.read(1 << 20)
        value = json.loads(body)
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def final_from_log(path: Path, tail_bytes: int = 1 << 16) -> dict[str, Any] | None:
    """The fields of the node's last structured ``"msg": "done"`` log line, if it wrote one.

    A correct server reports "done" on `/status` only while it lingers for its peers' last requests;
    the log line it writes at that moment is the record that survives its exit, so the summary's final
    accuracy never depends on the launcher's refresh tick catching that short window.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - tail_bytes))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if '"done"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("msg") == "done":
            return {k: entry[k] for k in ("step", "accuracy", "loss", "rejected", "quorums") if k in entry}
    return None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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


def summarize(statuses: list[dict[str, Any]], total_steps: int) -> Progress:
    """Median step / loss / speed and the spread of accuracies across the reporting correct servers.

    The median, not the maximum: one fast correct server says little about the job's progress.
    """
    steps = [int(s["step"]) for s in statuses if _num(s.get("step")) is not None]
    losses = [v for s in statuses if (v := _num(s.get("loss"))) is not None]
    accs = [v for s in statuses if (v := _num(s.get("accuracy"))) is not None]
    speeds = [v for s in statuses if (v := _num(s.get("steps_per_second"))) is not None]
    rejected = sum(count_rejected(s) for s in statuses)
    return Progress(
        step=int(statistics.median(steps)) if steps else 0,
        total_steps=total_steps,
        loss=statistics.median(losses) if losses else None,
        accuracy=statistics.median(accs) if accs else None,
        accuracy_range=(min(accs), max(accs)) if accs else None,
        steps_per_second=statistics.median(speeds) if speeds else None,
        rejected=rejected,
        reporting=len(statuses),
    )


def count_rejected(status: dict[str, Any]) -> int:
    rejected = status.get("rejected") or {}
    if not isinstance(rejected, dict):
        return 0
    return int(sum(v for v in rejected.values() if _num(v) is not None))


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
