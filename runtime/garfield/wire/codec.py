"""Tensors on the wire: raw bytes with dtype, shape, step and sender, streamed in chunks.

A tensor is encoded once per (step, version) into ready-serialized ``TensorChunk`` messages, so a
node answering many peers serialises nothing per call: the gRPC handlers stream these bytes as
they are. The receiving side (:class:`Assembler`) checks each chunk as it arrives and raises
:class:`Rejected` with a short reason label (the label of ``garfield_rejected_messages_total``)
at the first thing that is wrong, before the rest of a bad stream is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from garfield.proto import TensorChunk

if TYPE_CHECKING:
    from _collections_abc import dict_items


class _WireDtypes(dict[str, np.dtype]):
    """The dtypes that travel, by wire name. bfloat16 has no numpy dtype of its own; ml_dtypes (a
    TensorFlow/JAX dependency) provides one, imported on first need only: the import costs about a
    CPU-second of every replica's start-up, and most models are float32."""

    _bfloat16_loaded = False

    def load_bfloat16(self) -> None:
        if not self._bfloat16_loaded:
            self._bfloat16_loaded = True
            try:
                import ml_dtypes
            except ImportError:  # pragma: no cover - ml_dtypes is a declared dependency
                return
            self["bfloat16"] = np.dtype(ml_dtypes.bfloat16)

    def __missing__(self, name: str) -> np.dtype:
        self.load_bfloat16()
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        if name == "bfloat16":
            self.load_bfloat16()
        return dict.__contains__(self, name)

    def __iter__(self) -> Iterator[str]:
        self.load_bfloat16()
        return dict.__iter__(self)

    def items(self) -> dict_items[str, np.dtype]:
        self.load_bfloat16()
        return dict.items(self)


DTYPES: dict[str, np.dtype] = _WireDtypes({
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "float16": np.dtype("<f2"),
})

# 4 MiB per message: large enough that per-message overhead is small next to the copy, small
# enough that a 1 GB model streams as 256 messages well under any message limit.
DEFAULT_CHUNK_BYTES = 4 << 20
# Room for the header fields of the first chunk (sender, dtype, shape, ...).
HEADER_SLACK = 4096

_DATA_TAG = bytes([(9 << 3) | 2])  # TensorChunk.data: field 9, length-delimited
_OFFSET_TAG = bytes([(8 << 3) | 0])  # TensorChunk.offset: field 8, varint


class Rejected(Exception):
    """A received message that must not be used. `reason` is a short, stable metric label."""

    REASONS = ("decode", "kind", "sender", "dtype", "shape", "size", "oversized", "truncated", "stale", "step",
               "nonfinite", "transport", "requester", "streams", "identity", "impersonation", "forbidden")

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def dtype_name(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    for name, known in dict.items(DTYPES):  # the common dtypes, without loading bfloat16's module
        if dtype == known:
            return name
    for name, known in DTYPES.items():
        if dtype == known:
            return name
    raise ValueError(f"dtype {dtype} cannot travel on the wire; supported: {', '.join(DTYPES)}")


def encode(array: np.ndarray, *, kind: int, step: int, sender: str, loss: float = math.nan,
           chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> list[bytes]:
    """Serialized ``TensorChunk`` messages carrying `array` (C-contiguous), header in the first.

    The payload is copied exactly once, into the serialized messages."""
    array = np.ascontiguousarray(array)
    name = dtype_name(array.dtype)
    if array.dtype.byteorder == ">":  # pragma: no cover - every supported host is little-endian
        array = array.astype(array.dtype.newbyteorder("<"))
    payload = array.reshape(-1).view(np.uint8).data  # a memoryview of the bytes, no copy
    total = len(payload)
    header = TensorChunk(kind=kind, step=step, sender=sender, dtype=name, shape=list(array.shape),
                         total_bytes=total, loss=loss).SerializeToString()
    messages: list[bytes] = []
    offset = 0
    while True:
        piece = payload[offset:offset + chunk_bytes]
        head = header if offset == 0 else TensorChunk(offset=offset).SerializeToString()
        messages.append(b"".join((head, _DATA_TAG, _varint(len(piece)), piece)) if len(piece) else head)
        offset += len(piece)
        if offset >= total:
            return messages


@dataclass(frozen=True)
class Expect:
    """What a reply must be to count: anything else is rejected with a reason."""

    kind: int
    sender: str
    dtype: str
    shape: tuple[int, ...]
    min_step: int
    max_step: int
    finite: bool = True

    @cached_property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * DTYPES[self.dtype].itemsize

    @cached_property
    def max_message_bytes(self) -> int:
        """The largest single message a correct sender produces for this tensor."""
        return min(self.nbytes, DEFAULT_CHUNK_BYTES) + HEADER_SLACK


@dataclass
class Received:
    """A validated tensor."""

    array: np.ndarray  # flat view over the received bytes (read-only when it views a one-chunk message)
    step: int
    sender: str
    loss: float


def all_finite(array: np.ndarray) -> bool:
    """True when no value is NaN or infinite.

    A finite sum proves every term finite (any NaN or inf makes the sum NaN or inf) without
    allocating a mask; only when the sum overflows or is NaN is the exact element check run."""
    if array.size == 0:
        return True
    work = array if array.dtype in (np.float32, np.float64) else array.astype(np.float32)
    with np.errstate(all="ignore"):
        if math.isfinite(float(np.add.reduce(work))):
            return True
        return bool(np.isfinite(work).all())


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(raw) and shift < 64:
        byte = raw[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
    return -1, pos


def _split_payload(raw: bytes) -> tuple[bytes, memoryview] | None:
    """(the message without its `data` field, a view of the data) when `data` occurs exactly once:
    the header is then parsed by protobuf from a few bytes and the payload is never copied. None
    when the bytes do not scan as protobuf fields (the full parser then decides)."""
    pos, found = 0, None
    n = len(raw)
    while pos < n:
        field_start = pos
        tag, pos = _read_varint(raw, pos)
        if tag < 0:
            return None
        wire = tag & 7
        if wire == 0:
            _, pos = _read_varint(raw, pos)
            if _ < 0:
                return None
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, start = _read_varint(raw, pos)
            if length < 0:
                return None
            pos = start + length
            if tag >> 3 == 9:
                if found is not None:
                    return None
                found = (field_start, start, pos)
        else:
            return None
        if pos > n:
            return None
    if found is None:
        return None
    field_start, data_start, data_end = found
    return raw[:field_start] + raw[data_end:], memoryview(raw)[data_start:data_end]


def _continuation(raw: bytes) -> tuple[int, memoryview] | None:
    """(offset, data) of a continuation chunk in the exact layout :func:`encode` writes
    ([offset][data], nothing else), without copying the payload; None for any other layout, which
    then goes through the full protobuf parser."""
    if len(raw) < 3 or raw[0] != _OFFSET_TAG[0]:
        return None
    offset, pos = _read_varint(raw, 1)
    if offset < 0 or pos >= len(raw) or raw[pos] != _DATA_TAG[0]:
        return None
    length, pos = _read_varint(raw, pos + 1)
    if length < 0 or pos + length != len(raw):
        return None
    return offset, memoryview(raw)[pos:]


class Assembler:
    """Consumes one reply stream, chunk by chunk, checking it against an :class:`Expect`."""

    def __init__(self, expect: Expect) -> None:
        self.expect = expect
        self._buffer: np.ndarray | None = None
        self._single: bytes | memoryview | None = None
        self._received = 0
        self._header: TensorChunk | None = None

    def feed(self, raw: bytes) -> None:
        """Take one serialized chunk; raises :class:`Rejected` when it breaks the contract."""
        expect = self.expect
        if len(raw) > expect.max_message_bytes:
            raise Rejected("oversized", f"message of {len(raw)} bytes, at most {expect.max_message_bytes} expected")
        data: bytes | memoryview
        fast = _continuation(raw) if self._header is not None else None
        if fast is not None:
            offset, data = fast
        else:
            split = _split_payload(raw)
            try:
                chunk = TensorChunk.FromString(split[0] if split is not None else raw)
            except Exception:  # protobuf raises DecodeError, or others on arbitrary bytes
                raise Rejected("decode", "undecodable chunk") from None
            if self._header is None:
                self._check_header(chunk)
                self._header = chunk
            offset = chunk.offset
            data = split[1] if split is not None else chunk.data
        if offset != self._received:
            raise Rejected("truncated", f"chunk at byte {offset}, expected {self._received}")
        end = self._received + len(data)
        if end > expect.nbytes:
            raise Rejected("oversized", f"{end} bytes received for a tensor of {expect.nbytes}")
        if self._received == 0 and end == expect.nbytes:
            self._single = data  # whole tensor in one message: no second copy
        else:
            if self._buffer is None:
                self._buffer = np.empty(expect.nbytes, dtype=np.uint8)
            self._buffer[self._received:end] = np.frombuffer(data, dtype=np.uint8)
            if expect.finite and not all_finite(self._buffer[self._received:end].view(DTYPES[expect.dtype])):
                raise Rejected("nonfinite", f"NaN or infinite values in bytes {self._received}..{end}")
        self._received = end

    def _check_header(self, chunk: TensorChunk) -> None:
        expect = self.expect
        if chunk.kind != expect.kind:
            raise Rejected("kind", f"kind {chunk.kind}, expected {expect.kind}")
        if chunk.sender != expect.sender:
            raise Rejected("sender", f"sender {chunk.sender!r} on the channel of {expect.sender!r}")
        if chunk.dtype != expect.dtype:
            raise Rejected("dtype", f"dtype {chunk.dtype!r}, expected {expect.dtype!r}")
        if tuple(chunk.shape) != expect.shape:
            raise Rejected("shape", f"shape {tuple(chunk.shape)}, expected {expect.shape}")
        if chunk.total_bytes != expect.nbytes:
            raise Rejected("size", f"{chunk.total_bytes} bytes announced, expected {expect.nbytes}")
        if chunk.step < expect.min_step:
            raise Rejected("stale", f"step {chunk.step} < {expect.min_step}")
        if chunk.step > expect.max_step:
            raise Rejected("step", f"step {chunk.step} > {expect.max_step}")
        if chunk.offset != 0:
            raise Rejected("truncated", f"first chunk at byte {chunk.offset}")

    def finish(self) -> Received:
        """The validated tensor once the stream ended; raises :class:`Rejected` if incomplete."""
        expect = self.expect
        if self._header is None:
            raise Rejected("truncated", "empty reply")
        if self._received != expect.nbytes:
            raise Rejected("truncated", f"{self._received} of {expect.nbytes} bytes")
        dtype = DTYPES[expect.dtype]
        if self._single is not None:
            array = np.frombuffer(self._single, dtype=dtype)
        else:
            assert self._buffer is not None or expect.nbytes == 0
            array = (self._buffer if self._buffer is not None else np.empty(0, np.uint8)).view(dtype)
        if self._single is not None and expect.finite and not all_finite(array):
            raise Rejected("nonfinite", "NaN or infinite values")
        return Received(array=array, step=self._header.step, sender=self._header.sender, loss=self._header.loss)


def decode(messages: Iterable[bytes], expect: Expect) -> Received:
    """Validate and assemble a complete list of serialized chunks (tests, offline tools)."""
    assembler = Assembler(expect)
    for raw in messages:
        assembler.feed(raw)
    return assembler.finish()


def expect_for(array_like_shape: Sequence[int], dtype: str, *, kind: int, sender: str, min_step: int = 0,
               max_step: int = 2**62) -> Expect:
    return Expect(kind=kind, sender=sender, dtype=dtype, shape=tuple(int(s) for s in array_like_shape),
                  min_step=min_step, max_step=max_step)
