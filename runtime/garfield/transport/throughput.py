"""gRPC transfer speed of an N-byte tensor between two processes, over the real transport.

A child process serves one float32 tensor through the node service (the same generic handler,
chunking and options as training); this process fetches it repeatedly through a :class:`Peer`,
with full validation (header checks, reassembly, finiteness), and reports bytes per second.
Used by ``bench/throughput.py``; run ``python -m garfield.transport.throughput 100e6`` by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from garfield.proto import MODEL, TensorRequest
from garfield.wire.codec import DEFAULT_CHUNK_BYTES, encode, expect_for


@dataclass
class TransferResult:
    bytes: int
    repeats: int
    chunk_bytes: int
    seconds: list[float]
    gbps_median: float  # 1e9 bytes per second, median over repeats
    gbps_best: float


class _Source:
    def __init__(self, messages: list[bytes]) -> None:
        self.messages = messages

    async def serve(self, request: TensorRequest) -> list[bytes]:
        return self.messages

    def status_json(self) -> str:
        return "{}"

    def count_rejected(self, reason: str, detail: str) -> None:
        print(f"rejected {reason}: {detail}", file=sys.stderr)


async def _serve_forever(nbytes: int, chunk_bytes: int) -> None:
    from garfield.transport.server import start_server

    array = np.random.default_rng(0).standard_normal(nbytes // 4, dtype=np.float32)
    messages = encode(array, kind=MODEL, step=0, sender="source", chunk_bytes=chunk_bytes)
    server, port = await start_server(_Source(messages), "127.0.0.1:0", array.nbytes)
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await server.stop(None)


async def _fetch(port: int, nbytes: int, repeats: int) -> list[float]:
    from garfield.transport.client import Peer, tensor_request

    d = nbytes // 4
    peer = Peer("source", f"127.0.0.1:{port}", d * 4)
    expect = expect_for((d,), "float32", kind=MODEL, sender="source")
    request = tensor_request(MODEL, 0, "probe")
    times = []
    try:
        await peer.fetch(request, expect, timeout=120)  # warm-up: connection, first allocation
        for _ in range(repeats):
            start = time.perf_counter()
            received = await peer.fetch(request, expect, timeout=120)
            times.append(time.perf_counter() - start)
            assert received.array.size == d
    finally:
        await peer.close()
    return times


def measure_transfer(nbytes: int, repeats: int = 5) -> TransferResult:
    """Serve an `nbytes` float32 tensor from a child process and time `repeats` validated fetches
    (chunks of the transport's DEFAULT_CHUNK_BYTES, as in training)."""
    chunk_bytes = DEFAULT_CHUNK_BYTES
    nbytes = int(nbytes) // 4 * 4
    env = dict(os.environ)
    child = subprocess.Popen([sys.executable, "-m", "garfield.transport.throughput", "--serve", str(nbytes),
                              "--chunk-bytes", str(chunk_bytes)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                             text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.strip():
            raise RuntimeError("the transfer probe's server process did not start")
        times = asyncio.run(_fetch(int(line), nbytes, repeats))
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
                          gbps_median=rates[len(rates) // 2], gbps_best=rates[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nbytes", type=float, nargs="?", default=100e6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK_BYTES, help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        asyncio.run(_serve_forever(args.serve, args.chunk_bytes))
        return 0
    result = measure_transfer(int(args.nbytes), args.repeats)
    print(json.dumps(asdict(result)))
    return 0 if math.isfinite(result.gbps_median) else 1


if __name__ == "__main__":
    sys.exit(main())
