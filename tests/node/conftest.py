"""`real_cluster`: a second control plane with one REAL node (kube-scheduler, kubelet, containerd,
runc, CNI bridge, kube-proxy, DNS stand-in), separate from the session `control_plane` on which the
operator tests play kubelet themselves. See tests/support/node.py and docs/test-node.md.

Like `control_plane`, it never skips: missing binaries fail with "run scripts/test-cluster.sh build".
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.cluster import ControlPlaneUnavailable
from support.node import RealCluster

_started: list[RealCluster] = []


@pytest.fixture(scope="session")
def real_cluster() -> Iterator[RealCluster]:
    """A started RealCluster: `.kubectl(...)`, `.apply(...)`, `.api_client()`, `.env`, `.kubeconfig`,
    `.import_image(archive)`, `.test_image()`, `.create_namespace(ns)`, `.wait_pod(ns, name, phases)`,
    `.node.netns_for_ip(ip)`, `.timings`. Set GARFIELD_KEEP_CONTROL_PLANE=1 to keep its logs."""
    cluster = RealCluster()
    try:
        cluster.start()
    except ControlPlaneUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    _started.append(cluster)
    try:
        yield cluster
    finally:
        cluster.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for cluster in _started:
        figures = ", ".join(f"{k}={v}" for k, v in cluster.timings.items())
        terminalreporter.write_line(f"real test node: {figures}")
