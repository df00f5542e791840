"""Where each replica listens and how the others reach it.

On a cluster every pod listens on the same ports and is reached through the headless service's
DNS name; on one machine every process listens on loopback on ports of its own. The plan asks an
Addressing for both, so it stays a pure function of the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

GRPC_PORT = 50051
METRICS_PORT = 9090


class Addressing(Protocol):
    def address(self, role: str, index: int, name: str) -> str: ...

    def listen(self, role: str, index: int) -> str: ...

    def ports(self, role: str, index: int) -> dict[str, int]: ...

    def service_name(self, job_name: str) -> str: ...


@dataclass(frozen=True)
class ClusterDNS:
    """Pods of a job behind one headless service: `<pod>.<service>.<namespace>.svc:50051`."""

    namespace: str
    cluster_domain: str = ""
    grpc_port: int = GRPC_PORT
    metrics_port: int = METRICS_PORT

    def service_name(self, job_name: str) -> str:
        return job_name

    def address(self, role: str, index: int, name: str) -> str:
        job = name.rsplit("-", 2)[0]
        suffix = f".{self.cluster_domain}" if self.cluster_domain else ""
        return f"{name}.{self.service_name(job)}.{self.namespace}.svc{suffix}:{self.grpc_port}"

    def listen(self, role: str, index: int) -> str:
        return f"0.0.0.0:{self.grpc_port}"

    def ports(self, role: str, index: int) -> dict[str, int]:
        return {"grpc": self.grpc_port, "metrics": self.metrics_port}


@dataclass(frozen=True)
class Loopback:
    """Processes on one machine: each replica gets its own pair of ports, given up front.

    `ports_by_replica` maps (role, index) to {"grpc": p, "metrics": m}; the local launcher picks
    free ports and passes them in, which keeps planning free of side effects.
    """

    ports_by_replica: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    host: str = "127.0.0.1"

    def service_name(self, job_name: str) -> str:
        return job_name

    def ports(self, role: str, index: int) -> dict[str, int]:
        try:
            return dict(self.ports_by_replica[(role, index)])
        except KeyError:
            raise KeyError(f"no loopback ports assigned to {role} {index}") from None

    def address(self, role: str, index: int, name: str) -> str:
        return f"{self.host}:{self.ports(role, index)['grpc']}"

    def listen(self, role: str, index: int) -> str:
        return self.address(role, index, "")

    @classmethod
    def sequential(cls, roles: dict[str, int], base_port: int) -> "Loopback":
        """Consecutive ports from `base_port` (grpc, then metrics, per replica), in role order."""
        table: dict[tuple[str, int], dict[str, int]] = {}
        port = base_port
        for role, count in roles.items():
            for index in range(count):
                table[(role, index)] = {"grpc": port, "metrics": port + 1}
                port += 2
        return cls(table)


@dataclass(frozen=True)
class InProcess:
    """Every replica in one process (`garfield simulate`): a replica's address is its node name
    ("worker-3"), a key of the in-process network; nothing listens on a port."""

    def service_name(self, job_name: str) -> str:
        return job_name

    def ports(self, role: str, index: int) -> dict[str, int]:
        return {"grpc": 0, "metrics": 0}

    def address(self, role: str, index: int, name: str) -> str:
        return f"{role}-{index}"

    def listen(self, role: str, index: int) -> str:
        return f"{role}-{index}"
