"""Install the ByzantineTrainingJob CRD on a test control plane (idempotent)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from support.cluster import ControlPlane

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "byzantinetrainingjobs.yaml"
CRD_NAME = "byzantinetrainingjobs.garfield.dev"
ESTABLISHED_TIMEOUT_S = 60.0


def _established(plane: ControlPlane) -> tuple[bool, str]:
    """Whether the CRD's Established condition is True, and what kubectl said otherwise."""
    proc = plane.kubectl("get", f"customresourcedefinitions.apiextensions.k8s.io/{CRD_NAME}", "-o", "json", check=False)
    if proc.returncode != 0:
        return False, proc.stderr.strip()
    conditions = json.loads(proc.stdout).get("status", {}).get("conditions", [])
    state = {c.get("type"): c.get("status") for c in conditions}
    return state.get("Established") == "True", f"conditions {conditions}"


def install_crd(plane: ControlPlane) -> None:
    """Apply the CRD, then wait for its Established condition and for `btj` in discovery.

    The condition is read with `kubectl get` on the full resource name, polled, rather than with
    `kubectl wait crd/...`: on a freshly started apiserver the latter once exited 1 at once (its
    stderr not kept), which failed every test of the module at set-up; a `get` that fails is
    simply read again, and what kubectl last said is in the error."""
    plane.kubectl("apply", "-f", str(CRD_FILE))
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    said = ""
    while True:
        ready, said = _established(plane)
        if ready:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"CRD {CRD_NAME} not Established after {ESTABLISHED_TIMEOUT_S:.0f} s: {said}")
        time.sleep(0.2)
    # Discovery lags the Established condition by a moment; wait until kubectl can resolve `btj`.
    for _ in range(50):
        proc = plane.kubectl("get", "btj", "-A", check=False)
        if proc.returncode == 0:
            return
        said = proc.stderr.strip()
        time.sleep(0.2)
    raise RuntimeError(f"the btj resource never appeared in discovery: {said}")
