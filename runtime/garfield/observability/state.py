"""One node's live status: the fields of the observability contract, its Prometheus metrics and
its per-step timing breakdown.

The protocol loop writes here (cheap attribute updates and counter increments); the HTTP
endpoint, the gRPC Status call and the launcher read :meth:`NodeState.status`. Each node owns its
own Prometheus registry so several nodes can live in one process (tests, in-process runs).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

PHASES = ("starting", "running", "done", "failed")
TIMING = ("communication", "aggregation", "computation")


class NodeState:
    def __init__(self, job: str, role: str, index: int, total_steps: int, byzantine: bool = False) -> None:
        self.job, self.role, self.index = job, role, index
        self.total_steps = total_steps
        self.byzantine = byzantine
        self.step = 0
        self.loss: float | None = None
        self.accuracy: float | None = None
        self.phase = "starting"
        self.error: str | None = None
        self.rejected: dict[str, int] = {}
        # Per kind of tensor gathered ("gradient", "model", "proposal"): quorums gathered, those asked
        # among peers holding a simulated attacker, and those holding its reply: the evidence that an
        # attack was aggregated at all.
        self.quorums: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self._step_times: deque[tuple[float, int]] = deque(maxlen=64)
        self._timing_total = {k: 0.0 for k in TIMING}
        self._timing_steps = 0

        self.registry = CollectorRegistry(auto_describe=False)
        labels = {"job": job, "role": role, "index": str(index)}
        names = list(labels)
        self._g_step = Gauge("garfield_step", "Model updates done (servers, peers) or gradients computed (workers).", names,
                             registry=self.registry).labels(**labels)
        self._g_total = Gauge("garfield_total_steps", "spec.training.steps.", names, registry=self.registry).labels(**labels)
        self._g_loss = Gauge("garfield_loss", "Latest training loss.", names, registry=self.registry).labels(**labels)
        self._g_acc = Gauge("garfield_accuracy", "Latest test accuracy, 0 to 1.", names, registry=self.registry).labels(**labels)
        self._g_sps = Gauge("garfield_steps_per_second", "Recent training speed.", names, registry=self.registry).labels(**labels)
        self._g_byz = Gauge("garfield_byzantine", "1 when this replica simulates a Byzantine node.", names,
                            registry=self.registry).labels(**labels)
        self._g_phase = Gauge("garfield_phase", "1 for the node's current phase.", names + ["phase"], registry=self.registry)
        self._c_rejected = Counter("garfield_rejected_messages", "Received messages rejected, by reason.", names + ["reason"],
                                   registry=self.registry)
        self._c_quorums = Counter("garfield_quorums", "Quorums gathered, by kind of tensor.", names + ["kind"],
                                  registry=self.registry)
        self._c_attackable = Counter("garfield_attackable_quorums",
                                     "Quorums gathered among peers that hold a simulated attacker, by kind.",
                                     names + ["kind"], registry=self.registry)
        self._c_attacked = Counter("garfield_attacked_quorums",
                                   "Quorums gathered that hold a simulated attacker's reply, by kind.",
                                   names + ["kind"], registry=self.registry)
        self._c_timing = Counter("garfield_step_seconds", "Seconds spent per activity over all steps.", names + ["activity"],
                                 registry=self.registry)
        self._labels = labels
        self._g_total.set(total_steps)
        self._g_byz.set(1 if byzantine else 0)
        self.set_phase("starting")

    # -- writers (protocol loop) ---------------------------------------------------------------
    def set_phase(self, phase: str, error: str | None = None) -> None:
        assert phase in PHASES, phase
        self.phase = phase
        self.error = error
        for p in PHASES:
            self._g_phase.labels(**self._labels, phase=p).set(1 if p == phase else 0)

    def set_step(self, step: int) -> None:
        self.step = step
        self._g_step.set(step)
        with self._lock:
            self._step_times.append((time.monotonic(), step))
        self._g_sps.set(self.steps_per_second())

    def set_loss(self, loss: float | None) -> None:
        if loss is not None and math.isfinite(loss):
            self.loss = float(loss)
            self._g_loss.set(self.loss)

    def set_accuracy(self, accuracy: float | None) -> None:
        if accuracy is not None and math.isfinite(accuracy):
            self.accuracy = float(accuracy)
            self._g_acc.set(self.accuracy)

    def count_rejected(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self._c_rejected.labels(**self._labels, reason=reason).inc()

    def count_quorum(self, kind: str, attackable: bool, attacked: bool) -> None:
        """One quorum of `kind` gathered. `attackable`: asked among peers holding a simulated attacker;
        `attacked`: an attacker's reply was aggregated in it, or refused while gathering it. In an
        evaluation run both counts agree (PeerOrder's worst-case schedule)."""
        with self._lock:
            counts = self.quorums.setdefault(kind, {"gathered": 0, "attackable": 0, "attacked": 0})
            counts["gathered"] += 1
            counts["attackable"] += int(attackable)
            counts["attacked"] += int(attacked)
        self._c_quorums.labels(**self._labels, kind=kind).inc()
        if attackable:
            self._c_attackable.labels(**self._labels, kind=kind).inc()
        if attacked:
            self._c_attacked.labels(**self._labels, kind=kind).inc()

    def quorum_counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {kind: dict(counts) for kind, counts in self.quorums.items()}

    def add_timing(self, communication: float, aggregation: float, computation: float) -> None:
        """One step's breakdown (seconds)."""
        with self._lock:
            for key, value in zip(TIMING, (communication, aggregation, computation), strict=True):
                self._timing_total[key] += value
                self._c_timing.labels(**self._labels, activity=key).inc(value)
            self._timing_steps += 1

    # -- readers -------------------------------------------------------------------------------
    def steps_per_second(self) -> float:
        with self._lock:
            if len(self._step_times) < 2:
                return 0.0
            (t0, s0), (t1, s1) = self._step_times[0], self._step_times[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    def timing(self) -> dict[str, Any]:
        """Mean seconds per step of each activity (top-level keys), the number of steps timed,
        and each activity's share of their sum."""
        with self._lock:
            steps = self._timing_steps
            total = dict(self._timing_total)
        whole = sum(total.values())
        timing: dict[str, Any] = {k: (v / steps if steps else 0.0) for k, v in total.items()}
        timing["steps"] = steps
        timing["share"] = {k: (v / whole if whole else 0.0) for k, v in total.items()}
        return timing

    def status(self) -> dict[str, Any]:
        with self._lock:
            rejected = dict(self.rejected)
        status = {
            "job": self.job,
            "role": self.role,
            "index": self.index,
            "byzantine": self.byzantine,
            "step": self.step,
            "total_steps": self.total_steps,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "steps_per_second": self.steps_per_second(),
            "rejected": rejected,
            "quorums": self.quorum_counts(),
            "phase": self.phase,
            "timing": self.timing(),
        }
        if self.error:
            status["error"] = self.error
        return status

    def status_json(self) -> str:
        return json.dumps(self.status())
