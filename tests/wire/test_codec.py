"""Wire codec: bit-exact round trips and a reasoned rejection for every malformed reply."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from garfield.proto import GRADIENT, MODEL, TensorChunk
from garfield.wire import Expect, Rejected, all_finite, decode, encode


def _expect(array: np.ndarray, wire_dtype: str, **over) -> Expect:
    fields = dict(kind=GRADIENT, sender="worker-1", dtype=wire_dtype, shape=array.shape, min_step=3, max_step=10, finite=True)
    fields.update(over)
    return Expect(**fields)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_round_trip_is_bit_exact(dtype: str) -> None:
    rng = np.random.default_rng(0)
    np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    values = rng.standard_normal(1001).astype(np.float64)
    values[:4] = [0.0, -0.0, 1e-8, -65000.0 if dtype == "float16" else 1e30]
    array = values.astype(np_dtype)
    messages = encode(array, kind=GRADIENT, step=5, sender="worker-1", loss=0.25)
    got = decode(messages, _expect(array, dtype))
    assert got.array.dtype == array.dtype
    assert got.array.tobytes() == array.tobytes()
    assert (got.step, got.sender, got.loss) == (5, "worker-1", 0.25)


def test_multi_chunk_round_trip_is_bit_exact() -> None:
    array = np.random.default_rng(1).standard_normal(300_000).astype(np.float32)  # 1.2 MB
    messages = encode(array, kind=MODEL, step=7, sender="server-2", chunk_bytes=100_000)
    assert len(messages) == 12
    got = decode(messages, _expect(array, "float32", kind=MODEL, sender="server-2"))
    assert got.array.tobytes() == array.tobytes()
    assert got.array.flags.writeable


def test_empty_loss_is_nan() -> None:
    array = np.ones(3, np.float32)
    got = decode(encode(array, kind=GRADIENT, step=3, sender="worker-1"), _expect(array, "float32"))
    assert math.isnan(got.loss)


@pytest.mark.parametrize("change, reason", [
    (dict(kind=MODEL), "kind"),
    (dict(sender="worker-2"), "sender"),
    (dict(dtype="float64"), "dtype"),
    (dict(shape=(11,)), "shape"),
    (dict(min_step=6), "stale"),
    (dict(max_step=4), "step"),
])
def test_header_mismatch_is_rejected_with_reason(change: dict, reason: str) -> None:
    array = np.ones(10, np.float32)
    messages = encode(array, kind=GRADIENT, step=5, sender="worker-1")
    expect = _expect(array, "float32", **change)
    with pytest.raises(Rejected) as info:
        decode(messages, expect)
    assert info.value.reason == reason


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("chunk", [1 << 20, 1000])
def test_non_finite_values_are_rejected(bad: float, chunk: int) -> None:
    array = np.ones(5000, np.float32)
    array[4321] = bad
    with pytest.raises(Rejected) as info:
        decode(encode(array, kind=GRADIENT, step=5, sender="worker-1", chunk_bytes=chunk), _expect(array, "float32"))
    assert info.value.reason == "nonfinite"


def test_non_finite_allowed_when_not_required() -> None:
    array = np.array([np.nan, 1.0], np.float32)
    got = decode(encode(array, kind=GRADIENT, step=5, sender="worker-1"), _expect(array, "float32", finite=False))
    assert np.isnan(got.array[0])


def test_finite_check_survives_overflowing_sums() -> None:
    huge = np.full(10, 3e38, np.float32)  # finite values whose float32 sum overflows
    assert all_finite(huge)
    assert all_finite(np.full(10, 60000, np.float16))
    assert not all_finite(np.array([1, np.nan], np.float16))


def test_garbage_bytes_are_a_decode_rejection() -> None:
    array = np.ones(4, np.float32)
    with pytest.raises(Rejected) as info:
        decode([b"\xff\xff\xff\xff\x0f garbage"], _expect(array, "float32"))
    assert info.value.reason == "decode"


def test_announced_size_must_match_shape() -> None:
    array = np.ones(4, np.float32)
    header = TensorChunk(kind=GRADIENT, step=5, sender="worker-1", dtype="float32", shape=[4], total_bytes=12,
                         data=array.tobytes()[:12]).SerializeToString()
    with pytest.raises(Rejected) as info:
        decode([header], _expect(array, "float32"))
    assert info.value.reason == "size"


def test_extra_bytes_are_oversized_and_missing_bytes_truncated() -> None:
    array = np.ones(1000, np.float32)
    messages = encode(array, kind=GRADIENT, step=5, sender="worker-1", chunk_bytes=1000)
    extra = TensorChunk(offset=4000, data=b"\0" * 8).SerializeToString()
    with pytest.raises(Rejected) as info:
        decode(messages + [extra], _expect(array, "float32"))
    assert info.value.reason == "oversized"
    with pytest.raises(Rejected) as info:
        decode(messages[:-1], _expect(array, "float32"))
    assert info.value.reason == "truncated"
    with pytest.raises(Rejected) as info:  # chunks out of order
        decode([messages[0], messages[2], messages[1], messages[3]], _expect(array, "float32"))
    assert info.value.reason == "truncated"
    with pytest.raises(Rejected) as info:
        decode([], _expect(array, "float32"))
    assert info.value.reason == "truncated"


def test_a_message_larger_than_one_chunk_is_oversized() -> None:
    array = np.ones(2 << 20, np.float32)  # 8 MiB: correct senders send 1 MiB chunks
    messages = encode(array, kind=GRADIENT, step=5, sender="worker-1", chunk_bytes=8 << 20)
    with pytest.raises(Rejected) as info:
        decode(messages, _expect(array, "float32"))
    assert info.value.reason == "oversized"


def test_continuation_chunks_in_another_valid_layout_still_decode() -> None:
    """The zero-copy parser handles encode()'s layout; any other valid protobuf layout falls back."""
    array = np.arange(600, dtype=np.float32)
    messages = encode(array, kind=GRADIENT, step=5, sender="worker-1", chunk_bytes=800)
    reordered = [messages[0]] + [TensorChunk(data=TensorChunk.FromString(m).data, offset=TensorChunk.FromString(m).offset,
                                             loss=1.0).SerializeToString() for m in messages[1:]]
    assert decode(reordered, _expect(array, "float32")).array.tobytes() == array.tobytes()


def test_unsupported_dtype_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="cannot travel"):
        encode(np.ones(3, np.int32), kind=GRADIENT, step=0, sender="x")


def test_first_chunk_with_payload_before_header_decodes() -> None:
    """The zero-copy header/payload split does not depend on field order."""
    array = np.arange(10, dtype=np.float32)
    data_first = (TensorChunk(data=array.tobytes()).SerializeToString()
                  + TensorChunk(kind=GRADIENT, step=5, sender="worker-1", dtype="float32", shape=[10],
                                total_bytes=40).SerializeToString())
    got = decode([data_first], _expect(array, "float32"))
    assert got.array.tobytes() == array.tobytes() and got.step == 5
    twice = data_first + TensorChunk(data=b"\0" * 40).SerializeToString()  # repeated field: protobuf keeps the last
    assert decode([twice], _expect(array, "float32")).array.tobytes() == b"\0" * 40
