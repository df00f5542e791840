"""No rule allocates more than 3x its input: peak resident memory during a call, measured by
resetting the kernel's high-water mark (/proc/self/clear_refs) before the call."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch

from garfield.aggregators import aggregate, force_torch, names

CLEAR = Path("/proc/self/clear_refs")

pytestmark = pytest.mark.skipif(not CLEAR.exists(), reason="needs Linux /proc/self/clear_refs")


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_extra_bytes(call) -> int:
    gc.collect()
    CLEAR.write_text("5")  # reset VmHWM to the current RSS
    base = _status("VmRSS")
    call()
    return _status("VmHWM") - base


def setting(name: str) -> int:
    return {"krum": 4, "multi-krum": 4, "bulyan": 2}.get(name, 5)


@pytest.mark.parametrize("backend", ["compiled", "torch"])
@pytest.mark.parametrize("name", names())
def test_no_rule_allocates_more_than_three_times_its_input(name, backend):
    n, d = 11, 500_000  # 22 MB of float32
    X = torch.randn(n, d)
    f = setting(name)
    input_bytes = X.numel() * X.element_size()
    ctx = force_torch() if backend == "torch" else _Null()
    with ctx:
        aggregate(name, X[:, :4096].contiguous(), f)  # compile / warm up outside the measurement
        extra = peak_extra_bytes(lambda: aggregate(name, X, f))
    print(f"{name} {backend}: {extra / 1e6:.1f} MB")
    assert extra <= 3 * input_bytes, f"{name}: peak {extra / 1e6:.0f} MB for a {input_bytes / 1e6:.0f} MB input"
    # The compiled path should stay near its output size (plus thread buffers).
    if backend == "compiled":
        assert extra <= 0.5 * input_bytes, f"{name}: peak {extra / 1e6:.0f} MB for a {input_bytes / 1e6:.0f} MB input"


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
