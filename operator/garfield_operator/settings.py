"""The operator's configuration, from flags and environment, and how it maps onto kopf's settings."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import kopf

from garfield_operator import constants as C

DEFAULT_IMAGE = "garfield:0.1.0"


@dataclass
class Config:
    namespaces: list[str] = field(default_factory=list)  # empty + all_namespaces: cluster-wide
    all_namespaces: bool = False
    standalone: bool = False
    peering: str | None = None
    liveness_port: int = 8080
    metrics_port: int = 9100  # 0 disables the metrics endpoint
    bind_address: str = "0.0.0.0"
    runtime_image: str = field(default_factory=lambda: os.environ.get("GARFIELD_RUNTIME_IMAGE") or DEFAULT_IMAGE)
    workers: int = 8  # concurrent reconciles (of distinct jobs)
    progress_interval: float = 10.0  # seconds between /status reads of running jobs
    status_port: int | None = None  # read /status on this port instead of the pod's metrics port
    log_format: str = "json"
    verbose: bool = False
    webhook_port: int = 0  # 0: no admission webhook
    webhook_cert: str | None = None
    webhook_key: str | None = None
    # Give each job its own NetworkPolicy (rendering.render_network_policy); the operator's pods are
    # the ones carrying `operator_pod_labels`, and `metrics_from` (NetworkPolicyPeer objects) may
    # scrape the job pods' metrics port too.
    network_policies: bool = False
    operator_pod_labels: dict[str, str] = field(default_factory=dict)
    metrics_from: list[dict[str, object]] = field(default_factory=list)


def uses_globs(config: Config) -> bool:
    return any(ch in ns for ns in config.namespaces for ch in "*?[!")


def apply_to_kopf(settings: kopf.OperatorSettings, config: Config) -> None:
    """kopf's own bookkeeping under garfield.dev names; server-side filtering of the children.

    The handlers are plain event handlers: kopf stores no progress and adds no finalizer to jobs, so
    a job can always be deleted even while the operator is down. The names are still set, so any
    future state-keeping handler uses the operator's own prefix and never collides with another
    kopf operator's.
    """
    settings.persistence.finalizer = C.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=C.PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=C.PREFIX, key="last-handled-configuration")
    settings.watching.label_selectors[("", "v1", "pods")] = C.LABEL_JOB
    settings.watching.label_selectors[("", "v1", "services")] = C.LABEL_JOB
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.posting.level = logging.WARNING
    settings.networking.connect_timeout = 10
    # Dynamic scanning (watching Namespaces and CRDs) is only needed to follow namespace globs; without
    # it the operator needs no cluster-wide read rights beyond its own resources (least privilege).
    settings.scanning.disabled = not uses_globs(config)
    if config.webhook_port:
        from garfield_operator import webhook

        assert config.webhook_cert and config.webhook_key
        settings.admission.server = webhook.server(config.bind_address, config.webhook_port,
                                                   config.webhook_cert, config.webhook_key)
        settings.admission.managed = None  # the chart owns the ValidatingWebhookConfiguration
    if config.peering:
        settings.peering.name = config.peering
        settings.peering.mandatory = True
    settings.peering.standalone = config.standalone
