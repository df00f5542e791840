"""A cluster DNS stand-in for the real test node: it stands in for CoreDNS.

No CoreDNS package exists on these machines and no registry serves its image, so the node's
``clusterDNS`` address (198.18.0.1) is answered by this small responder. It serves the part of
the Kubernetes DNS specification the project relies on, straight from the node cluster's API
(query on demand, cached for a second, so names of pods that appear later resolve as soon as
their Endpoints list them):

- ``<svc>.<ns>.svc.<domain>``: the ClusterIP, or for a headless service the addresses of its
  Endpoints (ready ones, plus not-ready ones when the service publishes them: the endpoints
  controller already puts those under ``addresses``);
- ``<hostname>.<svc>.<ns>.svc.<domain>``: the Endpoints address whose ``hostname`` is that name,
  i.e. a pod with ``spec.hostname``/``spec.subdomain`` behind a headless service (how the
  operator names replicas), and the ``a-b-c-d`` form of an address without a hostname;
- ``<a-b-c-d>.<ns>.pod.<domain>``: that address (CoreDNS's ``pods insecure``).

Only A records (class IN). Other types of a known name get an empty NOERROR answer; unknown names,
and every name outside the domain (there is no upstream: the node's pods reach nothing outside
this machine), get NXDOMAIN with an SOA for negative caching. Search-path expansion is the pod
resolver's (kubelet writes ``search <ns>.svc.<domain> svc.<domain> <domain>`` and ``ndots:5``).
UDP and TCP. ExternalName services, SRV and PTR records are not served.

Run as a process (what :class:`tests.support.node.RealNode` does, so it is stopped by PID)::

    python tests/support/dns.py --listen 198.18.0.1 --server https://198.18.0.1:PORT --token-file F
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

TYPE_A = 1
TYPE_SOA = 6
CLASS_IN = 1
RCODE_OK, RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_NOTIMP = 0, 1, 2, 3, 4
TTL = 5

# -- wire format --------------------------------------------------------------------------------


class DNSFormatError(ValueError):
    pass


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        if label:
            raw = label.encode("idna") if not label.isascii() else label.encode()
            if len(raw) > 63:
                raise DNSFormatError(f"label too long: {label!r}")
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def decode_name(msg: bytes, offset: int) -> tuple[str, int]:
    """Read a (possibly compressed) name at ``offset``; return it and the offset after it."""
    labels: list[str] = []
    end = -1
    hops = 0
    while True:
        if offset >= len(msg):
            raise DNSFormatError("name runs past the message")
        length = msg[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(msg):
                raise DNSFormatError("truncated pointer")
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | msg[offset + 1]
            hops += 1
            if hops > 32:
                raise DNSFormatError("pointer loop")
            continue
        if length & 0xC0:
            raise DNSFormatError("bad label type")
        offset += 1
        if length == 0:
            break
        labels.append(msg[offset:offset + length].decode("ascii", errors="replace"))
        offset += length
    return ".".join(labels), (end if end >= 0 else offset)


def build_query(name: str, qtype: int = TYPE_A, ident: int = 0x1234) -> bytes:
    """A recursion-desired query (for tests and readiness probes)."""
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


def parse_response(msg: bytes) -> tuple[int, list[str]]:
    """(rcode, A addresses) of a response."""
    _ident, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        _, off = decode_name(msg, off)
        off += 4
    addrs = []
    for _ in range(an):
        _, off = decode_name(msg, off)
        rtype, _rclass, _ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        if rtype == TYPE_A and rdlen == 4:
            addrs.append(socket.inet_ntoa(msg[off:off + 4]))
        off += rdlen
    return flags & 0xF, addrs


def _soa(domain: str) -> bytes:
    timers = struct.pack("!IIIII", 1, 7200, 1800, 86400, TTL)
    rdata = encode_name(f"ns.dns.{domain}") + encode_name(f"hostmaster.{domain}") + timers
    return encode_name(domain) + struct.pack("!HHIH", TYPE_SOA, CLASS_IN, TTL, len(rdata)) + rdata


def answer(query: bytes, resolve: Callable[[str], list[str] | None], domain: str = "cluster.local") -> bytes:
    """The response to one query message. ``resolve(name)``: addresses, [] for a name without A
    records, None for an unknown name."""
    if len(query) < 12:
        raise DNSFormatError("short message")
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    rd = flags & 0x0100
    opcode = (flags >> 11) & 0xF

    def reply(rcode: int, question: bytes = b"", answers: list[bytes] | None = None,
              authority: list[bytes] | None = None) -> bytes:
        answers, authority = answers or [], authority or []
        hdr = struct.pack("!HHHHHH", ident, 0x8000 | 0x0400 | rd | 0x0080 | rcode,
                          1 if question else 0, len(answers), len(authority), 0)
        return hdr + question + b"".join(answers) + b"".join(authority)

    if flags & 0x8000:
        raise DNSFormatError("not a query")
    if opcode != 0:
        return reply(RCODE_NOTIMP)
    if qdcount != 1:
        return reply(RCODE_FORMERR)
    name, off = decode_name(query, 12)
    if off + 4 > len(query):
        return reply(RCODE_FORMERR)
    qtype, qclass = struct.unpack("!HH", query[off:off + 4])
    question = query[12:off + 4]
    try:
        addrs = resolve(name.lower().rstrip("."))
    except Exception:  # the API is not reachable: let the client retry
        return reply(RCODE_SERVFAIL, question)
    zone = domain if name.lower().rstrip(".").endswith(domain) else "."
    if addrs is None:
        return reply(RCODE_NXDOMAIN, question, authority=[_soa(zone)])
    if qclass != CLASS_IN or qtype != TYPE_A or not addrs:
        return reply(RCODE_OK, question, authority=[_soa(zone)])
    records = [b"\xc0\x0c" + struct.pack("!HHIH", TYPE_A, CLASS_IN, TTL, 4) + socket.inet_aton(a) for a in addrs]
    return reply(RCODE_OK, question, answers=records)


# -- cluster lookups ----------------------------------------------------------------------------


class ClusterResolver:
    """Names under ``domain`` from the API's Services and Endpoints (cached ``cache_s`` seconds)."""

    def __init__(self, server: str, token: str, domain: str = "cluster.local", cache_s: float = 1.0) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.domain = domain
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._ctx = ssl.create_default_context()
        self._ctx.check_hostname = False
        self._ctx.verify_mode = ssl.CERT_NONE  # the test apiserver's self-signed certificate

    def _get(self, path: str) -> dict[str, Any] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(path)
            if hit and now - hit[0] < self.cache_s:
                return hit[1]
        req = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, context=self._ctx, timeout=3) as resp:
                obj: dict[str, Any] | None = json.load(resp)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            obj = None
        with self._lock:
            self._cache[path] = (now, obj)
        return obj

    def _endpoint_addresses(self, ns: str, svc: str) -> list[dict[str, Any]]:
        ep = self._get(f"/api/v1/namespaces/{ns}/endpoints/{svc}") or {}
        return [a for subset in ep.get("subsets") or [] for a in subset.get("addresses") or []]

    def __call__(self, name: str) -> list[str] | None:
        suffix = "." + self.domain
        if not name.endswith(suffix):
            return None
        labels = name[: -len(suffix)].split(".")
        if len(labels) == 3 and labels[2] == "svc":  # <svc>.<ns>.svc
            svc, ns = labels[0], labels[1]
            obj = self._get(f"/api/v1/namespaces/{ns}/services/{svc}")
            if obj is None:
                return None
            spec = obj.get("spec") or {}
            if spec.get("type") == "ExternalName":
                return None
            ip = spec.get("clusterIP")
            if ip and ip != "None":
                return [ip]
            addrs = [a["ip"] for a in self._endpoint_addresses(ns, svc)]
            return addrs or None
        if len(labels) == 4 and labels[3] == "svc":  # <hostname>.<svc>.<ns>.svc
            host, svc, ns = labels[0], labels[1], labels[2]
            addrs = [a["ip"] for a in self._endpoint_addresses(ns, svc)
                     if a.get("hostname") == host or (not a.get("hostname") and a["ip"].replace(".", "-") == host)]
            return addrs or None
        if len(labels) == 3 and labels[2] == "pod":  # <a-b-c-d>.<ns>.pod
            try:
                return [str(ipaddress.IPv4Address(labels[0].replace("-", ".")))]
            except ValueError:
                return None
        return None


# -- servers ------------------------------------------------------------------------------------


class DNSServer:
    """UDP + TCP responders on ``(host, port)``, each in a daemon thread."""

    def __init__(self, host: str, port: int, resolve: Callable[[str], list[str] | None], domain: str = "cluster.local") -> None:
        class UDPHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                try:
                    sock.sendto(answer(data, resolve, domain), self.client_address)
                except DNSFormatError:
                    pass

        class TCPHandler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    head = self.rfile.read(2)
                    if len(head) < 2:
                        return
                    (length,) = struct.unpack("!H", head)
                    data = self.rfile.read(length)
                    try:
                        out = answer(data, resolve, domain)
                    except DNSFormatError:
                        return
                    self.wfile.write(struct.pack("!H", len(out)) + out)

        class UDP(socketserver.ThreadingMixIn, socketserver.UDPServer):
            allow_reuse_address = True
            daemon_threads = True

        class TCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.udp = UDP((host, port), UDPHandler)
        self.tcp = TCP((host, self.udp.server_address[1]), TCPHandler)
        self.address = self.udp.server_address
        self._threads: list[threading.Thread] = []

    def start(self) -> "DNSServer":
        for srv in (self.udp, self.tcp):
            t = threading.Thread(target=srv.serve_forever, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for srv in (self.udp, self.tcp):
            srv.shutdown()
            srv.server_close()


def query(host: str, port: int, name: str, qtype: int = TYPE_A, timeout: float = 2.0, tcp: bool = False) -> tuple[int, list[str]]:
    """Ask ``host:port`` one question; (rcode, A addresses)."""
    msg = build_query(name, qtype)
    if tcp:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack("!H", len(msg)) + msg)
            head = s.recv(2, socket.MSG_WAITALL)
            data = s.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(msg, (host, port))
            data, _ = s.recvfrom(4096)
    return parse_response(data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Cluster DNS stand-in (for CoreDNS) of the real test node")
    p.add_argument("--listen", default="198.18.0.1")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--server", required=True, help="the apiserver URL")
    p.add_argument("--token-file", required=True, help="a file holding a bearer token that may read services/endpoints")
    p.add_argument("--domain", default="cluster.local")
    args = p.parse_args(argv)
    with open(args.token_file) as f:
        token = f.read().strip()
    server = DNSServer(args.listen, args.port, ClusterResolver(args.server, token, args.domain), args.domain).start()
    print(f"cluster DNS stand-in on {server.address[0]}:{server.address[1]} (udp+tcp) for {args.domain}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
