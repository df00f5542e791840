"""The cluster DNS stand-in (for CoreDNS) without a cluster: codec and name rules."""

from __future__ import annotations

import socket
import struct

import pytest

from support import dns

pytestmark = pytest.mark.node


class FakeAPI(dns.ClusterResolver):
    def __init__(self, objects: dict[str, dict]) -> None:
        super().__init__("https://unused", "token", cache_s=0)
        self.objects = objects

    def _get(self, path: str):  # type: ignore[override]
        return self.objects.get(path)


OBJECTS = {
    "/api/v1/namespaces/ns/services/peers": {"spec": {"clusterIP": "None"}},
    "/api/v1/namespaces/ns/endpoints/peers": {"subsets": [{"addresses": [
        {"ip": "198.18.0.11", "hostname": "worker-0"}, {"ip": "198.18.0.12", "hostname": "worker-1"},
        {"ip": "198.18.0.13"}]}]},
    "/api/v1/namespaces/default/services/kubernetes": {"spec": {"clusterIP": "198.19.0.1"}},
}


def test_names() -> None:
    r = FakeAPI(OBJECTS)
    assert r("worker-1.peers.ns.svc.cluster.local") == ["198.18.0.12"]
    assert r("198-18-0-13.peers.ns.svc.cluster.local") == ["198.18.0.13"]
    assert r("peers.ns.svc.cluster.local") == ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
    assert r("kubernetes.default.svc.cluster.local") == ["198.19.0.1"]
    assert r("198-18-0-40.ns.pod.cluster.local") == ["198.18.0.40"]
    # not there (yet), search-path variants, outside the domain
    assert r("worker-2.peers.ns.svc.cluster.local") is None
    assert r("worker-1.peers.ns.svc.cluster.local.ns.svc.cluster.local") is None
    assert r("peers.other.svc.cluster.local") is None
    assert r("example.com") is None


def test_wire_roundtrip_udp_and_tcp() -> None:
    server = dns.DNSServer("127.0.0.1", 0, FakeAPI(OBJECTS)).start()
    try:
        host, port = server.address
        assert dns.query(host, port, "worker-0.peers.ns.svc.cluster.local") == (0, ["198.18.0.11"])
        assert dns.query(host, port, "Worker-0.Peers.ns.svc.cluster.local.", tcp=True) == (0, ["198.18.0.11"])
        assert dns.query(host, port, "missing.peers.ns.svc.cluster.local") == (dns.RCODE_NXDOMAIN, [])
        assert dns.query(host, port, "worker-0.peers.ns.svc.cluster.local", qtype=28) == (0, [])  # AAAA: NODATA
        # a malformed query (two questions) is answered FORMERR
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(struct.pack("!HHHHHH", 7, 0x0100, 2, 0, 0, 0), (host, port))  # two questions
            rcode = struct.unpack("!HH", s.recv(512)[:4])[1] & 0xF
        assert rcode == dns.RCODE_FORMERR
    finally:
        server.stop()


def test_api_down_is_servfail() -> None:
    def broken(name: str):
        raise OSError("apiserver unreachable")

    msg = dns.answer(dns.build_query("a.b.ns.svc.cluster.local"), broken)
    assert dns.parse_response(msg) == (dns.RCODE_SERVFAIL, [])
