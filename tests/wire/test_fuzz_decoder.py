"""Fuzzing the wire decoder (garfield.wire.Assembler) with what a Byzantine peer can send: a correct
reply with its bytes flipped, cut, repeated, reordered or spliced, and bytes from nowhere.

Whatever arrives, the decoder either rejects the reply with one of its reasons (Rejected.REASONS)
or returns a tensor that meets the expectation: the right dtype and size, finite, a step in range,
the dialled sender. It never raises anything else and never allocates more than the tensor.
Derandomized, with a bounded budget.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from garfield.proto import GRADIENT
from garfield.wire import Expect, Rejected, decode, encode

D = 700  # 2,800 bytes of float32: with 1 KiB chunks, a reply of 3 messages (header + 2 continuations)
EXPECT = Expect(kind=GRADIENT, sender="worker-1", dtype="float32", shape=(D,), min_step=5, max_step=9)
GOOD = encode(np.linspace(-1, 1, D, dtype=np.float32), kind=GRADIENT, step=7, sender="worker-1", chunk_bytes=1024)


def mutate(messages: list[bytes], data: st.DataObject) -> list[bytes]:
    out = list(messages)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        if not out:
            out.append(data.draw(st.binary(max_size=64)))
            continue
        i = data.draw(st.integers(0, len(out) - 1), label="message")
        raw = bytearray(out[i])
        what = data.draw(st.sampled_from(["flip", "cut", "grow", "drop", "repeat", "swap", "splice", "random"]))
        if what == "flip" and raw:
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
            out[i] = bytes(raw)
        elif what == "cut":
            out[i] = bytes(raw[: data.draw(st.integers(0, len(raw)))])
        elif what == "grow":
            out[i] = bytes(raw) + data.draw(st.binary(min_size=1, max_size=32))
        elif what == "drop":
            del out[i]
        elif what == "repeat":
            out.insert(i, out[i])
        elif what == "swap" and len(out) > 1:
            j = data.draw(st.integers(0, len(out) - 1))
            out[i], out[j] = out[j], out[i]
        elif what == "splice":
            at = data.draw(st.integers(0, len(raw)))
            out[i] = bytes(raw[:at]) + data.draw(st.binary(max_size=16)) + bytes(raw[at:])
        else:
            out[i] = data.draw(st.binary(max_size=1200))
    return out


def check(messages: list[bytes]) -> None:
    try:
        got = decode(messages, EXPECT)
    except Rejected as exc:
        assert exc.reason in Rejected.REASONS, exc.reason
        return
    assert got.array.dtype == np.float32 and got.array.shape == (D,)
    assert np.isfinite(got.array).all()
    assert EXPECT.min_step <= got.step <= EXPECT.max_step and got.sender == EXPECT.sender


@settings(derandomize=True, max_examples=600, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
@example(None)  # the correct reply itself
def test_a_mutated_reply_is_rejected_or_meets_the_expectation(data: st.DataObject | None) -> None:
    check(GOOD if data is None else mutate(GOOD, data))


@settings(derandomize=True, max_examples=300, deadline=None, database=None)
@given(st.lists(st.binary(max_size=4096), max_size=4))
def test_bytes_from_nowhere_are_rejected(messages: list[bytes]) -> None:
    check(messages)


def test_the_correct_reply_decodes_exactly() -> None:
    got = decode(GOOD, EXPECT)
    assert np.array_equal(got.array, np.linspace(-1, 1, D, dtype=np.float32)) and got.step == 7
