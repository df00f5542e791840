"""Cross-framework wire test: a tensor sent by a PyTorch process (which cannot import TensorFlow)
decodes bit-exactly into a TensorFlow tensor here, and the same bits go back over gRPC into
PyTorch (float32, float64, float16, bfloat16; normal, subnormal and signed-zero values)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from garfield.proto import GRADIENT, TensorRequest
from garfield.task import Task
from garfield.transport import Peer, start_server, tensor_request
from garfield.wire import encode, expect_for

keras = pytest.importorskip("keras")
from garfield.adapters.tensorflow import TensorFlowAdapter  # noqa: E402

from torch_wire_peer import DTYPES, LENGTH, bit_patterns  # noqa: E402

HERE = Path(__file__).resolve().parent

TF_DTYPES = {"float32": "float32", "float64": "float64", "float16": "float16", "bfloat16": "bfloat16"}


class _Source:
    """Serves, per step, the chunks of the tensor received for that step once it is ready."""

    def __init__(self) -> None:
        self.ready: dict[int, asyncio.Future[list[bytes]]] = {}

    def slot(self, step: int) -> asyncio.Future[list[bytes]]:
        return self.ready.setdefault(step, asyncio.get_running_loop().create_future())

    async def serve(self, request: TensorRequest) -> list[bytes]:
        return await self.slot(request.step)

    def status_json(self) -> str:
        return "{}"

    def count_rejected(self, reason: str, detail: str) -> None:
        raise AssertionError(f"rejected {reason}: {detail}")


def _adapter(make_spec: Any) -> TensorFlowAdapter:
    x, y = np.zeros((4, 2), np.float32), np.zeros(4, np.int64)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    return TensorFlowAdapter(Task(model, "sparse_categorical_crossentropy", "sgd", (x, y)),
                             make_spec(batchSize=2), "worker", 0)


async def _exchange(adapter: TensorFlowAdapter, tf: Any, torch_node: subprocess.Popen) -> list[str]:
    assert torch_node.stdout is not None and torch_node.stdin is not None
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, torch_node.stdout.readline)
    assert line.startswith("PORT "), line
    source = _Source()
    for i in range(len(DTYPES)):
        source.slot(i)
    server, port = await start_server(source, "127.0.0.1:0", 1 << 20)
    torch_node.stdin.write(f"PEER 127.0.0.1:{port}\n")
    torch_node.stdin.flush()
    peer = Peer("torch-node", f"127.0.0.1:{line.split()[1]}", 1 << 20)
    try:
        for i, (name, _torch_dtype, bits_type) in enumerate(DTYPES):
            received = await peer.fetch(tensor_request(GRADIENT, i, "tf-node"),
                                        expect_for((LENGTH,), name, kind=GRADIENT, sender="torch-node"), timeout=60)
            tensor = adapter.from_numpy(received.array)
            assert isinstance(tensor, tf.Tensor) and tensor.dtype == tf.as_dtype(TF_DTYPES[name]), (name, tensor.dtype)
            # the same values built natively in TensorFlow from the shared bit patterns
            unsigned = {np.uint16: tf.uint16, np.uint32: tf.uint32, np.uint64: tf.uint64}[bits_type]
            native = tf.bitcast(tf.constant(bit_patterns(name, bits_type), unsigned), tensor.dtype)
            assert tf.reduce_all(tf.equal(tf.bitcast(tensor, unsigned), tf.bitcast(native, unsigned))), name
            # and back: a TensorFlow tensor on the wire (an op in between proves it is a real tf tensor)
            echoed = tf.identity(tensor)
            source.ready[i].set_result(encode(adapter.to_numpy(echoed), kind=GRADIENT, step=i, sender="tf-node"))
        out = await loop.run_in_executor(None, torch_node.communicate)
        return out[0].split("\n")
    finally:
        await peer.close()
        await server.stop(None)


def test_pytorch_to_tensorflow_and_back_is_bit_exact(make_spec: Any, tf: Any) -> None:
    adapter = _adapter(make_spec)
    torch_node = subprocess.Popen([sys.executable, str(HERE / "torch_wire_peer.py")], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
    try:
        lines = asyncio.run(asyncio.wait_for(_exchange(adapter, tf, torch_node), 120))
    finally:
        if torch_node.poll() is None:
            torch_node.kill()
            torch_node.wait()
    assert [ln for ln in lines if ln] == [f"OK {name}" for name, _, _ in DTYPES]
    assert torch_node.returncode == 0
