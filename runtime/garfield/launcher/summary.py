"""The run's outcome: what `garfield run` prints, writes to summary.json, and returns to programs."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

SUCCEEDED, FAILED, INTERRUPTED, TIMED_OUT = "succeeded", "failed", "interrupted", "timeout"
EXIT_CODES = {SUCCEEDED: 0, FAILED: 1, TIMED_OUT: 1, INTERRUPTED: 130}


@dataclass
class RunResult:
    """Everything summary.json holds, as a value (see :meth:`to_dict` for the file's layout)."""

    job: str
    topology: str
    outcome: str
    message: str
    total_steps: int
    wall_time: float
    output_dir: Path
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)  # correct servers' (peers') last status
    replicas: dict[str, dict[str, Any]] = field(default_factory=dict)  # exit status of every replica
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # correct servers' final models (manifests)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    @property
    def final_accuracy(self) -> dict[str, float | None]:
        return {name: s.get("accuracy") for name, s in self.servers.items()}

    @property
    def rejected(self) -> dict[str, int]:
        """Rejected messages by reason, summed over the correct servers."""
        total: dict[str, int] = {}
        for status in self.servers.values():
            for reason, count in (status.get("rejected") or {}).items():
                if isinstance(count, (int, float)):
                    total[reason] = total.get(reason, 0) + int(count)
        return dict(sorted(total.items()))

    def accuracy_stats(self) -> dict[str, float] | None:
        values = [v for v in self.final_accuracy.values() if isinstance(v, (int, float))]
        if not values:
            return None
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    def to_dict(self) -> dict[str, Any]:
        steps = [step for s in self.servers.values() if isinstance(step := s.get("step"), int)]
        return {
            "job": self.job,
            "topology": self.topology,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "message": self.message,
            "total_steps": self.total_steps,
            "steps": max(steps) if steps else 0,
            "wall_time_seconds": round(self.wall_time, 3),
            "final_accuracy": self.final_accuracy,
            "accuracy": self.accuracy_stats(),
            "rejected": self.rejected,
            "rejected_total": sum(self.rejected.values()),
            "servers": self.servers,
            "replicas": self.replicas,
            "models": self.models,
            "output_dir": str(self.output_dir),
        }

    def write(self, path: Path | None = None) -> Path:
        target = path or self.output_dir / "summary.json"
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str) + "\n")
        tmp.replace(target)
        return target

    def headline(self) -> str:
        stats = self.accuracy_stats()
        acc = (f"final accuracy {stats['median']:.1%} (correct servers {stats['min']:.1%}-{stats['max']:.1%})"
               if stats else "no accuracy reported")
        written = [m["path"] for m in self.models.values() if "path" in m]
        models = f"; models in {Path(written[0]).parent.parent}" if written else ""
        return (f"{self.job}: {self.outcome} in {self.wall_time:.1f}s; {acc}; "
                f"{sum(self.rejected.values())} messages rejected{models}")


@dataclass(frozen=True)
class ModelOwner:
    """A correct server (peer) whose final model `collect_models` looks for: the replica's name,
    and its role and index, which name its folder."""

    name: str
    role: str
    index: int


def collect_models(folder: Path, primaries: Iterable[ModelOwner]) -> dict[str, dict[str, Any]]:
    """The manifests the correct servers (peers) wrote under `folder`, checked (file present, its
    SHA-256 matching), by replica name; a missing or damaged one is reported in its place."""
    from garfield.observability.models import ModelError, read_manifest

    found: dict[str, dict[str, Any]] = {}
    for child in primaries:
        try:
            found[child.name] = read_manifest(folder / f"{child.role}-{child.index}")
        except ModelError as exc:
            found[child.name] = {"error": str(exc)}
    return found
