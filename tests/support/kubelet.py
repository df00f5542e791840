"""Tests play kubelet and scheduler: bind pods to a node and write their status.

The test control plane has neither, so pods stay Pending until these helpers move them; this lets
a test drive every path the operator must handle (running, ready, exit 0, crash, image pull
back-off, unschedulable, graceful deletion) deterministically.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client

T = TypeVar("T")
NODE = "test-node-1"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKubelet:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api_client)

    # -- scheduler -------------------------------------------------------------------------------
    def bind(self, namespace: str, name: str, node: str = NODE) -> None:
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        # _preload_content=False: the client cannot deserialize the (empty) Binding reply.
        self.core.create_namespaced_pod_binding(name, namespace, body, _preload_content=False)

    def unschedulable(self, namespace: str, name: str,
                      message: str = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.") -> None:
        self._status(namespace, name, {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
             "lastTransitionTime": _now()}]})

    # -- kubelet ---------------------------------------------------------------------------------
    def _status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.core.patch_namespaced_pod_status(name, namespace, {"status": status})

    def _container(self, pod: Any, state: dict[str, Any], ready: bool = False) -> list[dict[str, Any]]:
        c = pod.spec.containers[0]
        return [{"name": c.name, "image": c.image, "imageID": "", "ready": ready, "restartCount": 0, "state": state}]

    def run(self, namespace: str, name: str, ip: str = "127.0.0.1", ready: bool = True) -> None:
        """Bind (if needed) and report the pod Running (and Ready) with `ip` as its pod IP."""
        pod = self.core.read_namespaced_pod(name, namespace)
        if not pod.spec.node_name:
            self.bind(namespace, name)
        self._status(namespace, name, {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.0.1", "startTime": _now(),
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()},
                {"type": "Initialized", "status": "True", "lastTransitionTime": _now()},
                {"type": "ContainersReady", "status": str(ready), "lastTransitionTime": _now()},
                {"type": "Ready", "status": str(ready), "lastTransitionTime": _now()},
            ],
            "containerStatuses": self._container(pod, {"running": {"startedAt": _now()}}, ready),
        })

    def exit(self, namespace: str, name: str, code: int = 1, reason: str | None = None, message: str = "") -> None:
        """The container exited: Succeeded for code 0, else Failed."""
        pod = self.core.read_namespaced_pod(name, namespace)
        if not pod.spec.node_name:
            self.bind(namespace, name)
        term = {"exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error"), "startedAt": _now(),
                "finishedAt": _now()}
        if message:
            term["message"] = message
        self._status(namespace, name, {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": _now()}],
            "containerStatuses": self._container(pod, {"terminated": term}),
        })

    def waiting(self, namespace: str, name: str, reason: str = "ImagePullBackOff",
                message: str = 'Back-off pulling image "registry.invalid/garfield:nope"') -> None:
        pod = self.core.read_namespaced_pod(name, namespace)
        if not pod.spec.node_name:
            self.bind(namespace, name)
        self._status(namespace, name, {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()}],
            "containerStatuses": self._container(pod, {"waiting": {"reason": reason, "message": message}}),
        })

    def finish_deletions(self, namespace: str) -> int:
        """Complete graceful deletions (what kubelet does once containers stop)."""
        done = 0
        for pod in self.core.list_namespaced_pod(namespace).items:
            if pod.metadata.deletion_timestamp:
                try:
                    self.core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
                    done += 1
                except client.ApiException as exc:
                    if exc.status != 404:
                        raise
        return done

    def pods(self, namespace: str, selector: str = "") -> dict[str, Any]:
        return {p.metadata.name: p for p in self.core.list_namespaced_pod(namespace, label_selector=selector).items}


def wait_for(predicate: Callable[[], T], timeout: float = 120.0, interval: float = 0.1, what: str = "") -> T:
    """Poll until `predicate()` is truthy; return it, or fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: last value {last!r}")
