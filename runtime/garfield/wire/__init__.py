"""Wire format of Garfield messages: chunked raw-byte tensors with validation on receipt."""

from garfield.wire.codec import (
    DEFAULT_CHUNK_BYTES,
    DTYPES,
    Assembler,
    Expect,
    Received,
    Rejected,
    all_finite,
    decode,
    dtype_name,
    encode,
    expect_for,
)

__all__ = ["DEFAULT_CHUNK_BYTES", "DTYPES", "Assembler", "Expect", "Received", "Rejected", "all_finite", "decode",
           "dtype_name", "encode", "expect_for"]
