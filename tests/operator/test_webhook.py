"""The optional validating webhook: the apiserver asks the operator, `kubectl apply` refuses."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from support.cluster import ControlPlane, free_port
from support.kubelet import wait_for
from support.operator_harness import Jobs, OperatorProcess, StatusServer, job_manifest

pytestmark = pytest.mark.cluster

NS = "gwh-admission"


def _certs(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for IP 127.0.0.1 (what a chart would generate into a Secret)."""
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=garfield-test-ca")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tls.crt",
        "-days", "1", "-extfile", "ext.cnf")
    return d / "ca.crt", d / "tls.crt", d / "tls.key"


def test_webhook_refuses_invalid_jobs_at_apply(crd: ControlPlane, jobs: Jobs, status_server: StatusServer,
                                               tmp_path: Path) -> None:
    ca, cert, key = _certs(tmp_path)
    port = free_port()
    crd.kubectl("create", "namespace", NS)
    crd.kubectl("label", "namespace", NS, "garfield-test=webhook")
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "garfield-test-webhook"},
        "webhooks": [{
            "name": "validate.garfield.dev",
            "clientConfig": {"url": f"https://127.0.0.1:{port}/validate-btj",
                             "caBundle": base64.b64encode(ca.read_bytes()).decode()},
            "rules": [{"apiGroups": ["garfield.dev"], "apiVersions": ["v1alpha1"], "operations": ["CREATE", "UPDATE"],
                       "resources": ["byzantinetrainingjobs"]}],
            "namespaceSelector": {"matchLabels": {"garfield-test": "webhook"}},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 5,
        }],
    }
    op = OperatorProcess(crd, NS, status_server.port, tmp_path / "op.log",
                         extra_args=["--webhook-port", str(port), "--webhook-cert", str(cert), "--webhook-key", str(key)])
    op.start()
    try:
        crd.kubectl("apply", "-f", "-", input=json.dumps(config))
        bad = json.dumps(job_manifest("bad", workers=4, worker_f=1, gar="krum"))

        def refused() -> str:
            proc = crd.kubectl("apply", "-n", NS, "-f", "-", input=bad, check=False)
            assert proc.returncode != 0 or "created" in proc.stdout, proc.stderr
            if proc.returncode == 0:  # the webhook was not active yet: undo and retry
                crd.kubectl("delete", "btj", "bad", "-n", NS, "--wait=false")
                return ""
            return proc.stderr

        err = wait_for(refused, interval=0.5, what="the webhook refusing the job")
        assert "spec.workers: krum needs n >= 2f+3 on the 3 replies it aggregates (n=4, f=1)" in err
        assert "denied the request" in err
        good = json.dumps(job_manifest("good", workers=6, worker_f=1, gar="krum"))
        crd.kubectl("apply", "-n", NS, "-f", "-", input=good)
        wait_for(lambda: len(jobs.pods(NS)) == 7, what="the valid job's pods")
        # Updates are checked too: lowering replicas below krum's bound is refused.
        proc = crd.kubectl("patch", "btj", "good", "-n", NS, "--type=merge", "-p",
                           '{"spec":{"workers":{"replicas":4}}}', check=False)
        assert proc.returncode != 0 and "krum needs" in proc.stderr
        # A template setting what Garfield owns is refused naming the field (the schema declares
        # those fields, so the apiserver hands them to the webhook instead of pruning them).
        owned = job_manifest("owned", workers=4, worker_f=1)
        owned["spec"]["workers"]["template"] = {"command": ["sh"]}
        proc = crd.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(owned), check=False)
        assert proc.returncode != 0 and "spec.workers.template.command: Garfield owns the container command" in proc.stderr
        # Accepted with warnings: kubectl prints them.
        weak = job_manifest("weak", workers=4, worker_f=1)
        weak["spec"]["workers"]["template"] = {"securityContext": {"privileged": True}, "allowWeakerSecurityContext": True}
        proc = crd.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(weak))
        assert "Warning: spec.workers.template.securityContext.privileged: true weakens" in proc.stderr, proc.stderr
    finally:
        crd.kubectl("delete", "validatingwebhookconfiguration", "garfield-test-webhook", check=False)
        op.stop()
