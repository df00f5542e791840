"""Install the ByzantineTrainingJob CRD on a test control plane (idempotent)."""

from __future__ import annotations

from pathlib import Path

from support.cluster import ControlPlane

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "byzantinetrainingjobs.yaml"
CRD_NAME = "byzantinetrainingjobs.garfield.dev"


def install_crd(plane: ControlPlane) -> None:
    plane.kubectl("apply", "-f", str(CRD_FILE))
    plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    # Discovery lags the Established condition by a moment; wait until kubectl can resolve `btj`.
    for _ in range(50):
        if plane.kubectl("get", "btj", "-A", check=False).returncode == 0:
            return
        import time

        time.sleep(0.2)
    raise RuntimeError("the btj resource never appeared in discovery")
