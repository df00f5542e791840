"""gRPC transfer speed of an N-byte tensor between two processes, over the real transport.

A child process serves one float32 tensor through the node service (the same generic handler,
chunking and options as training); this process fetches it repeatedly through a :class:`Peer`,
with full validation (header checks, reassembly, finiteness), and reports bytes per second.
With ``tls=True`` the same transfer runs over mutual TLS, as a job with ``spec.security.mutualTLS``
does: a throwaway CA of a dummy job signs a server and a client certificate, the child serves
through :class:`~garfield.transport.server.ServerTls` (an authority that admits the probe) and this
process fetches through a TLS :class:`Peer` that checks the server's name. The handshake happens in
the untimed warm-up fetch (its time is ``warmup_seconds``), so the timed fetches are the steady
cost of encryption and authentication on an open channel.
Used by ``bench/throughput.py``; run ``python -m garfield.transport.throughput 100e6 [--tls]`` by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from garfield.proto import MODEL, TensorRequest
from garfield.security.files import TlsMaterial
from garfield.wire.codec import DEFAULT_CHUNK_BYTES, encode, expect_for

# The dummy job whose CA signs the probe's two certificates (--tls), and the server's name.
PROBE_NAMESPACE = "bench"
PROBE_JOB = "transfer-probe"
PROBE_SERVER = "server-0"


@dataclass
class TransferResult:
    bytes: int
    repeats: int
    chunk_bytes: int
    seconds: list[float]
    gbps_median: float  # 1e9 bytes per second, median over repeats
    gbps_best: float
    tls: bool = False  # over mutual TLS (else plaintext)
    warmup_seconds: float | None = None  # the untimed first fetch: connection (and TLS handshake), first allocation


class _Source:
    def __init__(self, messages: list[bytes]) -> None:
        self.messages = messages

    async def serve(self, request: TensorRequest) -> list[bytes]:
        return self.messages

    def status_json(self) -> str:
        return "{}"

    def count_rejected(self, reason: str, detail: str) -> None:
        print(f"rejected {reason}: {detail}", file=sys.stderr)


class _AdmitProbe:
    """The probe server's authority: any caller whose certificate the dummy job's CA signed (the
    handshake already checked that) may ask for anything."""

    def authenticate(self, uri: str | None) -> str:
        from garfield.security.identity import ReplicaIdentity
        from garfield.transport.server import RequestRejected

        identity = ReplicaIdentity.parse(uri) if uri else None
        if identity is None:
            raise RequestRejected("identity", f"no replica identity in the caller's certificate ({uri!r})")
        return identity.name

    def permit(self, caller: str, request: TensorRequest) -> None:
        return None


def probe_credentials(folder: Path) -> tuple[Path, Path]:
    """A throwaway CA of the dummy job and two certificates of it, written as replica TLS folders:
    (server's folder, client's folder). The server's certificate names PROBE_SERVER."""
    from garfield.security import files
    from garfield.security.certificates import issue, new_ca
    from garfield.security.identity import ReplicaIdentity
    from garfield.spec.kinds import Role

    ca = new_ca(PROBE_JOB, PROBE_NAMESPACE)
    server = ReplicaIdentity(PROBE_NAMESPACE, PROBE_JOB, Role.SERVER, 0)
    client = ReplicaIdentity(PROBE_NAMESPACE, PROBE_JOB, Role.WORKER, 0)
    server_dir, client_dir = folder / server.name, folder / client.name
    files.write(server_dir, ca, issue(ca, server, [PROBE_SERVER]))
    files.write(client_dir, ca, issue(ca, client, [client.name]))
    return server_dir, client_dir


async def _serve_forever(nbytes: int, chunk_bytes: int, tls_dir: str | None = None) -> None:
    from garfield.transport.server import ServerTls, start_server

    array = np.random.default_rng(0).standard_normal(nbytes // 4, dtype=np.float32)
    messages = encode(array, kind=MODEL, step=0, sender="source", chunk_bytes=chunk_bytes)
    tls = None
    if tls_dir is not None:
        from garfield.security import files

        tls = ServerTls(files.load(tls_dir), _AdmitProbe())
    server, port = await start_server(_Source(messages), "127.0.0.1:0", array.nbytes, tls=tls)
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await server.stop(None)


async def _fetch(port: int, nbytes: int, repeats: int, tls: TlsMaterial | None = None) -> tuple[float, list[float]]:
    """(warm-up seconds, seconds of each timed fetch)."""
    from garfield.transport.client import Peer, tensor_request

    d = nbytes // 4
    peer = Peer("source", f"127.0.0.1:{port}", d * 4, tls=tls, tls_name=PROBE_SERVER if tls is not None else None)
    expect = expect_for((d,), "float32", kind=MODEL, sender="source")
    request = tensor_request(MODEL, 0, "probe")
    times = []
    try:
        start = time.perf_counter()
        await peer.fetch(request, expect, timeout=120)  # warm-up: connection (TLS handshake), first allocation
        warmup = time.perf_counter() - start
        for _ in range(repeats):
            start = time.perf_counter()
            received = await peer.fetch(request, expect, timeout=120)
            times.append(time.perf_counter() - start)
            assert received.array.size == d
    finally:
        await peer.close()
    return warmup, times


def measure_transfer(nbytes: int, repeats: int = 5, tls: bool = False) -> TransferResult:
    """Serve an `nbytes` float32 tensor from a child process and time `repeats` validated fetches
    (chunks of the transport's DEFAULT_CHUNK_BYTES, as in training). `tls`: over mutual TLS, with
    certificates of a throwaway CA made for the probe (see the module's docstring); default plaintext."""
    chunk_bytes = DEFAULT_CHUNK_BYTES
    nbytes = int(nbytes) // 4 * 4
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="garfield-transfer-") as tmp:
        command = [sys.executable, "-m", "garfield.transport.throughput", "--serve", str(nbytes),
                   "--chunk-bytes", str(chunk_bytes)]
        material = None
        if tls:
            from garfield.security import files

            server_dir, client_dir = probe_credentials(Path(tmp))
            material = files.load(client_dir)
            command += ["--tls-dir", str(server_dir)]
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            if not line.strip():
                raise RuntimeError("the transfer probe's server process did not start")
            warmup, times = asyncio.run(_fetch(int(line), nbytes, repeats, material))
        finally:
            if child.stdin:
                child.stdin.close()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    rates = sorted(nbytes / t / 1e9 for t in times)
    return TransferResult(bytes=nbytes, repeats=repeats, chunk_bytes=chunk_bytes, seconds=times,
                          gbps_median=rates[len(rates) // 2], gbps_best=rates[-1], tls=tls, warmup_seconds=warmup)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nbytes", type=float, nargs="?", default=100e6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tls", action="store_true", help="over mutual TLS (a throwaway CA and two certificates)")
    parser.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK_BYTES, help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", default=None, help=argparse.SUPPRESS)  # --serve over mutual TLS with this folder
    args = parser.parse_args(argv)
    if args.serve is not None:
        asyncio.run(_serve_forever(args.serve, args.chunk_bytes, args.tls_dir))
        return 0
    result = measure_transfer(int(args.nbytes), args.repeats, tls=args.tls)
    print(json.dumps(asdict(result)))
    return 0 if math.isfinite(result.gbps_median) else 1


if __name__ == "__main__":
    sys.exit(main())
