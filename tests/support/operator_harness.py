"""Run the operator as a subprocess and talk to jobs: shared by the operator tests and bench.

`StatusServer` serves a real /status per loopback address (the test writes 127.0.0.N as the pod IP);
`OperatorProcess` runs `garfield-operator` against a control plane; `Jobs` wraps the custom objects API.
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client

from support import manifests
from support.cluster import ControlPlane, free_port
from support.kubelet import wait_for

GROUP, VERSION, PLURAL = "garfield.dev", "v1alpha1", "byzantinetrainingjobs"


class StatusServer:
    """Serves /status JSON per local address: the test writes 127.0.0.N as a pod's IP and puts the
    JSON that pod's node would serve under that address."""

    def __init__(self) -> None:
        self.replies: dict[str, dict[str, Any]] = {}
        replies = self.replies

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                local = self.connection.getsockname()[0]
                body = replies.get(local)
                if self.path != "/status" or body is None:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# What the tests' operators run with: each job gets its own NetworkPolicy (the operator's pods are
# the ones labelled so; the test operators run as processes, so the label only fills the policy).
NETWORK_POLICY_ARGS = ["--network-policy", "--operator-pod-labels", "app.kubernetes.io/component=operator"]


class OperatorProcess:
    def __init__(self, plane: ControlPlane, pattern: str, status_port: int, log_path: Path,
                 kubeconfig: str | None = None, extra_args: list[str] | None = None) -> None:
        self.plane = plane
        self.extra_args = list(extra_args or [])
        self.kubeconfig = kubeconfig or plane.kubeconfig
        self.pattern = pattern
        self.status_port = status_port
        self.log_path = log_path
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "OperatorProcess":
        env = dict(self.plane.env, GARFIELD_RUNTIME_IMAGE="registry.test/garfield:test", KUBECONFIG=self.kubeconfig)
        argv = ["garfield-operator", "--namespace", self.pattern, "--standalone", "--bind-address", "127.0.0.1",
                "--liveness-port", str(self.liveness_port), "--metrics-port", str(self.metrics_port),
                "--progress-interval", "0.3", "--status-port", str(self.status_port), *self.extra_args]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(self.alive, what="the operator's /healthz")
        return self

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator exited: {self.log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
            return r.read().decode()

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


class Jobs:
    """ByzantineTrainingJob helpers over the admin client."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.api = client.CustomObjectsApi(plane.api_client())
        self.core = client.CoreV1Api(plane.api_client())

    def create(self, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    def get(self, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def status(self, ns: str, name: str) -> dict[str, Any]:
        job = self.get(ns, name)
        return (job or {}).get("status") or {}

    def statuses(self, ns: str) -> dict[str, Any]:
        items = self.api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
        return {j["metadata"]["name"]: j.get("status") for j in items}

    def patch_spec(self, ns: str, name: str, patch: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)

    def delete(self, ns: str, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)

    def condition(self, ns: str, name: str, ctype: str) -> dict[str, Any] | None:
        for c in self.status(ns, name).get("conditions") or []:
            if c["type"] == ctype:
                return c
        return None

    def wait_phase(self, ns: str, name: str, phase: str, timeout: float = 120) -> dict[str, Any]:
        return wait_for(lambda: (s := self.status(ns, name)).get("phase") == phase and s, timeout=timeout,
                        what=f"{ns}/{name} phase {phase} (status: {self.status(ns, name)})")

    def events(self, ns: str, reason: str | None = None) -> list[Any]:
        items = self.core.list_namespaced_event(ns).items
        return [e for e in items if reason is None or e.reason == reason]

    def pods(self, ns: str) -> dict[str, Any]:
        return {p.metadata.name: p for p in self.core.list_namespaced_pod(ns).items}


def job_manifest(name: str, *, servers: int | None = 1, server_f: int = 0, workers: int = 3, worker_f: int = 1,
                 gar: str = "median", run_policy: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """manifests.job with three workers, the operator tests' usual size (runPolicy left out when empty)."""
    return manifests.job(name, servers=servers, server_f=server_f, workers=workers, worker_f=worker_f, gar=gar,
                         run_policy=run_policy or None, **spec)
