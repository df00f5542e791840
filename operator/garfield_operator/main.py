"""``garfield-operator``: run the ByzantineTrainingJob operator.

    garfield-operator --all-namespaces --standalone
    garfield-operator --namespace team-a --namespace 'ml-*' --peering garfield
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Sequence

import kopf

from garfield_operator import __version__
from garfield_operator.handlers import registry
from garfield_operator.metrics import Metrics
from garfield_operator.settings import DEFAULT_IMAGE, Config, apply_to_kopf


def parse_args(argv: Sequence[str] | None = None) -> Config:
    p = argparse.ArgumentParser(prog="garfield-operator", description="Reconcile ByzantineTrainingJobs into pods.")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable; globs like 'ml-*' allowed)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (cluster-wide)")
    peer = p.add_mutually_exclusive_group()
    peer.add_argument("--standalone", action="store_true", help="no peering with other operator replicas")
    peer.add_argument("--peering", metavar="NAME", help="kopf peering object to coordinate replicas (must exist)")
    p.add_argument("--liveness-port", type=int, default=8080, help="serve /healthz here (0 disables)")
    p.add_argument("--metrics-port", type=int, default=9100, help="serve Prometheus /metrics here (0 disables)")
    p.add_argument("--bind-address", default="0.0.0.0", help="address of the liveness and metrics endpoints")
    p.add_argument("--runtime-image", default=None,
                   help=f"image of jobs without spec.image (default: $GARFIELD_RUNTIME_IMAGE or {DEFAULT_IMAGE})")
    p.add_argument("--workers", type=int, default=8, help="jobs reconciled concurrently")
    p.add_argument("--progress-interval", type=float, default=10.0, help="seconds between reads of the servers' /status")
    p.add_argument("--status-port", type=int, default=None, help="read /status on this port instead of the pods' metrics port")
    p.add_argument("--webhook-port", type=int, default=0,
                   help="serve the validating admission webhook (path /validate-btj) on this HTTPS port (0: off)")
    p.add_argument("--webhook-cert", help="PEM certificate of the webhook server (required with --webhook-port)")
    p.add_argument("--webhook-key", help="PEM private key of the webhook server (required with --webhook-port)")
    p.add_argument("--network-policy", action="store_true",
                   help="give each job a NetworkPolicy: gRPC only from the same job's pods, status only from the "
                        "operator (--operator-pod-labels) and --metrics-from")
    p.add_argument("--operator-pod-labels", default="", metavar="K=V,...",
                   help="labels of the operator's own pods (required with --network-policy)")
    p.add_argument("--metrics-from", default="[]", metavar="JSON",
                   help="NetworkPolicyPeer list also allowed to the job pods' metrics port (e.g. Prometheus)")
    p.add_argument("--log-format", choices=["json", "plain", "full"], default="json")
    p.add_argument("--verbose", "-v", action="store_true")
    p.add_argument("--version", action="version", version=__version__)
    a = p.parse_args(argv)
    if not a.namespace and not a.all_namespaces:
        p.error("choose the scope: --namespace NS (repeatable) or --all-namespaces")
    if a.webhook_port and not (a.webhook_cert and a.webhook_key):
        p.error("--webhook-port needs --webhook-cert and --webhook-key")
    labels = _labels(p, a.operator_pod_labels)
    if a.network_policy and not labels:
        p.error("--network-policy needs --operator-pod-labels (else the policies would keep the operator from /status)")
    try:
        metrics_from = json.loads(a.metrics_from)
    except json.JSONDecodeError as exc:
        p.error(f"--metrics-from is not JSON: {exc}")
    if not isinstance(metrics_from, list) or not all(isinstance(peer, dict) for peer in metrics_from):
        p.error("--metrics-from must be a JSON list of NetworkPolicyPeer objects")
    config = Config(namespaces=a.namespace, all_namespaces=a.all_namespaces, standalone=a.standalone, peering=a.peering,
                    liveness_port=a.liveness_port, metrics_port=a.metrics_port, bind_address=a.bind_address,
                    workers=max(1, a.workers), progress_interval=a.progress_interval, status_port=a.status_port,
                    log_format=a.log_format, verbose=a.verbose, webhook_port=a.webhook_port,
                    webhook_cert=a.webhook_cert, webhook_key=a.webhook_key, network_policies=a.network_policy,
                    operator_pod_labels=labels, metrics_from=metrics_from)
    if a.runtime_image:
        config.runtime_image = a.runtime_image
    return config


def _labels(p: argparse.ArgumentParser, text: str) -> dict[str, str]:
    """'k=v,k2=v2' as a dict; a malformed pair is a usage error naming it."""
    labels: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            p.error(f"--operator-pod-labels: {pair!r} is not KEY=VALUE")
        labels[key] = value
    return labels


def configure_logging(config: Config) -> None:
    fmt = {"json": kopf.LogFormat.JSON, "plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL}[config.log_format]
    kopf.configure(verbose=config.verbose, log_format=fmt, log_refkey="k8s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if not config.verbose:  # one line per watch event ("Handler 'pod_event' succeeded") is noise
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


async def run(config: Config, **overrides: object) -> None:
    liveness = f"http://{config.bind_address}:{config.liveness_port}/healthz" if config.liveness_port else None
    memo = kopf.Memo(config=config, metrics=Metrics(), **overrides)
    if config.webhook_port:
        from garfield_operator import webhook

        webhook.register(registry)
    settings = kopf.OperatorSettings()
    apply_to_kopf(settings, config)
    await kopf.operator(
        registry=registry,
        settings=settings,
        memo=memo,
        standalone=config.standalone,
        peering_name=config.peering,
        clusterwide=config.all_namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=liveness,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    configure_logging(config)
    try:
        asyncio.run(run(config))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
