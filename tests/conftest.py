"""Shared fixtures. `control_plane`: one real kube-apiserver + etcd (+ controller-manager) per session.

Cluster tests are marked `@pytest.mark.cluster`. The fixture never skips: when the binaries are
missing it fails with "run scripts/test-cluster.sh build", so CI cannot silently lose the tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.cluster import ControlPlane, ControlPlaneUnavailable


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A started control plane; `.kubeconfig`, `.env`, `.kubectl(...)`, `.helm(...)`, `.api_client()`,
    `.service_account_kubeconfig(ns, name)`. The namespace `garfield-system` (the chart's release
    namespace) exists. Set GARFIELD_KEEP_CONTROL_PLANE=1 to keep its logs in the temp folder."""
    plane = ControlPlane()
    try:
        plane.start()
    except ControlPlaneUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()
