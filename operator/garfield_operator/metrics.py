"""Prometheus metrics of the operator: jobs by phase, reconcile errors, reconcile latency."""

from __future__ import annotations

from collections.abc import Hashable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from garfield_operator import constants as C

PHASES = (C.PENDING, C.RUNNING, C.RESTARTING, C.SUSPENDED, C.SUCCEEDED, C.FAILED)


class Metrics:
    """One registry per operator (not the global one), so tests can run several side by side."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Gauge("garfield_operator_jobs", "ByzantineTrainingJobs by phase.", ["phase"], registry=self.registry)
        self.reconciles = Counter("garfield_operator_reconciles_total", "Reconcile passes.", registry=self.registry)
        self.errors = Counter("garfield_operator_reconcile_errors_total", "Reconcile passes that failed (retried with backoff).",
                              ["reason"], registry=self.registry)
        self.latency = Histogram("garfield_operator_reconcile_duration_seconds", "Time of one reconcile pass.",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry)
        self.queue_depth = Gauge("garfield_operator_workqueue_depth", "Jobs waiting to be reconciled.", registry=self.registry)
        self.pods_created = Counter("garfield_operator_pods_created_total", "Pods created.", registry=self.registry)
        self.pods_deleted = Counter("garfield_operator_pods_deleted_total", "Pods deleted.", registry=self.registry)
        self._phase_of: dict[Hashable, str] = {}
        for phase in PHASES:
            self.jobs.labels(phase).set(0)

    def set_phase(self, key: Hashable, phase: str | None) -> None:
        old = self._phase_of.pop(key, None)
        if old is not None:
            self.jobs.labels(old).dec()
        if phase is not None:
            self._phase_of[key] = phase
            self.jobs.labels(phase).inc()

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
