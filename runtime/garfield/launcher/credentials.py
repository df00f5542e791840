"""`garfield run`'s mutual TLS: a temporary CA for the run, one key and certificate per replica.

The CA's key lives only in this process's memory while the replicas are issued, so no file of the
run can sign another certificate; each replica's folder (`<run>/tls/<role>-<index>/`, private)
holds its own key, its certificate and the CA's certificate, and is removed when the run ends
(keys of a finished run protect nothing and are best not left behind).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from garfield.plan import Plan
from garfield.security import files
from garfield.security.certificates import issue, new_ca
from garfield.spec.contract import ENV_TLS_DIR


def issue_run(plan: Plan, run_dir: Path) -> Path | None:
    """Issue every replica of `plan` that has an identity and point its environment at its folder.
    Returns the run's TLS folder (None when the job runs plaintext)."""
    replicas = [r for r in plan.replicas if r.identity is not None]
    if not replicas:
        return None
    root = (run_dir / "tls").resolve()
    ca = new_ca(plan.job_name, plan.namespace)
    for replica in replicas:
        assert replica.identity is not None
        folder = root / replica.identity.name
        files.write(folder, ca, issue(ca, replica.identity, replica.dns_names))
        replica.env[ENV_TLS_DIR] = str(folder)
    return root


def remove_run(root: Path | None) -> None:
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
