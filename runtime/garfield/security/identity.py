"""Who a replica is, as its certificate says: job, role and index, in one URI.

``garfield://<namespace>/<job>/<role>/<index>``: the URI SAN of every replica certificate. The
namespace and job make a certificate useless to another job even if its CA were shared; the role
and index are what the protocol calls the node ("worker-3"), so a request's `requester` field can
be compared with the identity that made it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from garfield.spec.kinds import Role

SCHEME = "garfield"
_URI = re.compile(r"garfield://(?P<namespace>[a-z0-9-]{1,63})/(?P<job>[a-z0-9-]{1,63})/(?P<role>[a-z]{1,16})/(?P<index>[0-9]{1,6})")


@dataclass(frozen=True)
class ReplicaIdentity:
    namespace: str
    job: str
    role: Role
    index: int

    @property
    def name(self) -> str:
        """The node's name among its peers, e.g. "worker-3" (NodeConfig.name)."""
        return f"{self.role}-{self.index}"

    @property
    def uri(self) -> str:
        return f"{SCHEME}://{self.namespace}/{self.job}/{self.role}/{self.index}"

    @classmethod
    def parse(cls, uri: str) -> ReplicaIdentity | None:
        """The identity a URI SAN names, or None when it names none (wrong scheme, unknown role...)."""
        match = _URI.fullmatch(uri)
        if match is None:
            return None
        try:
            role = Role(match["role"])
        except ValueError:
            return None
        return cls(match["namespace"], match["job"], role, int(match["index"]))
