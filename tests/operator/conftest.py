"""Fixtures of the operator tests: one operator process per test module on the shared control plane.

The operator runs as a real subprocess through its console script (`garfield-operator`), watching
namespaces `gop-*`; every test works in a namespace of its own, and plays kubelet itself.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from support.cluster import ControlPlane
from support.crd import install_crd
from support.kubelet import FakeKubelet
from support.operator_harness import NETWORK_POLICY_ARGS, Jobs, OperatorProcess, StatusServer


@pytest.fixture(scope="session")
def status_server() -> Iterator[StatusServer]:
    server = StatusServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane) -> ControlPlane:
    install_crd(control_plane)
    return control_plane


@pytest.fixture(scope="module")  # stops after its module: no idle operator during later tests
def operator(crd: ControlPlane, status_server: StatusServer,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    op = OperatorProcess(crd, "gop-*", status_server.port, tmp_path_factory.mktemp("operator") / "operator.log",
                         extra_args=NETWORK_POLICY_ARGS)
    op.start()
    yield op
    op.stop()


@pytest.fixture
def kubelet(control_plane: ControlPlane) -> FakeKubelet:
    return FakeKubelet(control_plane.api_client())


@pytest.fixture
def ns(control_plane: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A fresh namespace the session operator watches (gop-<test>-<random>)."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    name = f"gop-{base}-{uuid.uuid4().hex[:4]}"
    control_plane.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def jobs(control_plane: ControlPlane) -> Jobs:
    return Jobs(control_plane)




@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed test that used the module's operator shows the end of that operator's log."""
    outcome = yield
    report = outcome.get_result()
    op = getattr(item, "funcargs", {}).get("operator")
    if report.when == "call" and report.failed and isinstance(op, OperatorProcess) and op.log_path.exists():
        tail = op.log_path.read_text(errors="replace").splitlines()[-60:]
        report.sections.append(("operator log (last 60 lines)", "\n".join(tail)))
