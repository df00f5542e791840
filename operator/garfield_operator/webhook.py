"""Optional validating admission webhook: `kubectl apply` refuses an invalid job outright.

The CRD schema (Kubernetes 1.20, no CEL) cannot express the cross-field rules (n >= 2f+3 ...);
without the webhook such a job is stored and then marked Failed/Invalid by the reconciler. With
it, the apiserver asks the operator first and shows the validation module's message to the user.

The operator only serves (HTTPS, with the certificate and key it is given, e.g. from a Secret the
Helm chart generates); the ValidatingWebhookConfiguration is the chart's, pointing at path
``/validate-btj`` of the operator's service, so the operator needs no rights on webhook configs.
"""

from __future__ import annotations

from typing import Any

import kopf

from garfield.spec.validation import InvalidJob, validate_manifest

from garfield_operator import constants as C

WEBHOOK_ID = "validate-btj"  # the URL path: https://<operator>:<port>/validate-btj


def register(registry: kopf.OperatorRegistry) -> None:
    """Add the admission handler (only when a webhook server is configured: kopf refuses otherwise)."""

    @kopf.on.validate(C.GROUP, C.VERSION, C.PLURAL, id=WEBHOOK_ID, operations=["CREATE", "UPDATE"],
                      registry=registry)
    def validate_job(body: kopf.Body, name: str | None, namespace: str | None, warnings: list[str],
                     **_: Any) -> None:
        manifest = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                    "metadata": {"name": name or body.get("metadata", {}).get("name"), "namespace": namespace},
                    "spec": dict(body.get("spec") or {})}
        try:
            job = validate_manifest(manifest)
        except InvalidJob as exc:
            raise kopf.AdmissionError("; ".join(exc.errors), code=422) from None
        # Accepted with warnings (a weaker security context asked for, a non-robust rule):
        # kubectl prints each as "Warning: ...".
        warnings.extend(job.warnings)


def server(bind_address: str, port: int, certfile: str, keyfile: str) -> kopf.WebhookServer:
    return kopf.WebhookServer(addr=bind_address, port=port, certfile=certfile, pkeyfile=keyfile)
