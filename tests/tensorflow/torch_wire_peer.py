"""The PyTorch end of the cross-framework wire test, run as its own process without TensorFlow.

Protocol with the test (stdin/stdout lines):
  1. builds one torch tensor per wire dtype from fixed bit patterns, serves each over the node
     transport (GetTensor, kind GRADIENT, step = dtype index) and prints ``PORT <port>``;
  2. reads ``PEER <host:port>`` (the TensorFlow side's server, which serves the tensors it received
     back after a round trip through TensorFlow tensors);
  3. fetches them, decodes them through the PyTorch adapter and prints ``OK <dtype>`` when the
     bits are identical to the originals, ``MISMATCH <dtype> ...`` otherwise; exits 0 when all match.
"""

from __future__ import annotations

import asyncio
import sys

if __name__ == "__main__":  # the process of the PyTorch node: prove it never needs TensorFlow
    sys.modules["tensorflow"] = None  # type: ignore[assignment]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from garfield.adapters import create  # noqa: E402
from garfield.proto import GRADIENT, TensorRequest  # noqa: E402
from garfield.spec import validate_manifest  # noqa: E402
from garfield.task import Task  # noqa: E402
from garfield.transport import Peer, start_server, tensor_request  # noqa: E402
from garfield.wire import encode, expect_for  # noqa: E402

# (wire dtype, torch dtype, unsigned integer view of the same width)
DTYPES = [("float32", torch.float32, np.uint32), ("float64", torch.float64, np.uint64),
          ("float16", torch.float16, np.uint16), ("bfloat16", torch.bfloat16, np.uint16)]
EXPONENT_BITS = {"float32": 8, "float64": 11, "float16": 5, "bfloat16": 8}
LENGTH = 4099  # odd length: no accidental alignment of the payload


def bit_patterns(name: str, bits_type: type) -> np.ndarray:
    """Random finite values of every kind (normal, subnormal, +-0) as raw bits; shared with the test."""
    width = np.dtype(bits_type).itemsize * 8
    mantissa = width - 1 - EXPONENT_BITS[name]
    rng = np.random.default_rng(EXPONENT_BITS[name] * 1000 + width)
    bits = rng.integers(0, 2**width, size=LENGTH, dtype=np.uint64 if width == 64 else np.int64).astype(bits_type)
    exponent_mask = bits_type(((1 << EXPONENT_BITS[name]) - 1) << mantissa)
    special = (bits & exponent_mask) == exponent_mask  # inf / NaN patterns: not finite, not sendable
    bits[special] &= ~bits_type(1 << mantissa)
    bits[:4] = [0, bits_type(1 << (width - 1)), 1, bits_type(1 << mantissa) - bits_type(1)]  # +0, -0, subnormals
    return bits


def torch_tensor(name: str, dtype: torch.dtype, bits_type: type) -> torch.Tensor:
    signed = {np.uint16: torch.int16, np.uint32: torch.int32, np.uint64: torch.int64}[bits_type]
    raw = bit_patterns(name, bits_type).view(np.dtype(str(signed).replace("torch.", "")))
    return torch.from_numpy(raw.copy()).view(dtype)


class Source:
    def __init__(self, messages: dict[int, list[bytes]]) -> None:
        self.messages = messages

    async def serve(self, request: TensorRequest) -> list[bytes]:
        return self.messages[request.step]

    def status_json(self) -> str:
        return "{}"

    def count_rejected(self, reason: str, detail: str) -> None:
        print("REJECTED", reason, detail, flush=True)


def torch_adapter() -> object:
    manifest = {"apiVersion": "garfield.dev/v1alpha1", "kind": "ByzantineTrainingJob", "metadata": {"name": "wire"},
                "spec": {"framework": "pytorch", "task": {"entrypoint": "x:y"}, "topology": "ssmw",
                         "servers": {"replicas": 1}, "workers": {"replicas": 1}, "training": {"batchSize": 2}}}
    spec = validate_manifest(manifest).spec
    data = torch.utils.data.TensorDataset(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    task = Task(torch.nn.Linear(2, 2), torch.nn.CrossEntropyLoss(), lambda p: torch.optim.SGD(p, lr=0.1), data)
    return create("pytorch", task, spec, "worker", 0)


async def main() -> int:
    adapter = torch_adapter()
    originals = {i: torch_tensor(name, dtype, bits) for i, (name, dtype, bits) in enumerate(DTYPES)}
    messages = {i: encode(adapter.to_numpy(t), kind=GRADIENT, step=i, sender="torch-node")
                for i, t in originals.items()}
    server, port = await start_server(Source(messages), "127.0.0.1:0", 1 << 20)
    print(f"PORT {port}", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    peer = Peer("tf-node", line.split()[1], 1 << 20)
    failures = 0
    try:
        for i, (name, dtype, _bits) in enumerate(DTYPES):
            received = await peer.fetch(tensor_request(GRADIENT, i, "torch-node"),
                                        expect_for((LENGTH,), name, kind=GRADIENT, sender="tf-node"), timeout=60)
            back = adapter.from_numpy(received.array)
            same = back.dtype == dtype and torch.equal(back.view(torch.uint8), originals[i].view(torch.uint8))
            print(f"OK {name}" if same else f"MISMATCH {name} {back.dtype}", flush=True)
            failures += not same
    finally:
        await peer.close()
        await server.stop(None)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
