"""Stored bytes of an embedding profile (hash field ``e``): the vectors, compactly.

Three formats, told apart by the blob's first byte, so every one written so far still loads:

* ``f32`` (first byte ``{``): the original layout, a JSON object whose vectors are base64
  float32 (2,048 characters for 384 components). Still written when asked for (benchmarks,
  a rollback); read forever.
* ``f16`` (tag ``0x02``, the default): per-vector scale (float64, the largest magnitude)
  and the vector divided by it as float16: 8 + 2·dim bytes, about 2.6x smaller than ``f32``.
* ``i8`` (tag ``0x03``): per-vector scale and the vector as int8 in [-127, 127]:
  8 + dim bytes, about 5x smaller, but too coarse for sums rewritten at every change
  (long-term cosine with float32 down to 0.93; see ``BENCHMARKS.md``).

Stored vectors are running sums, read, grown by a few events and written again at every
change, so rounding is stochastic (unbiased; each threshold hashed from the component's own
bits and the rest of the state, so deterministic): round-to-nearest would drop every
increment below half a step.

A binary blob is ``tag | u16 rows | u16 dim | u32 meta length | meta JSON | rows float64
scales | rows x dim values`` (little-endian). ``meta`` is the same object as the JSON
layout with each vector replaced by its row number. The scale keeps the full float64 range:
decayed sums of a long-idle user sit far below float16's (and float32's) smallest number.
Encoding and decoding are whole-matrix numpy operations (no per-component Python); the
profile's arithmetic stays float64 in memory, only the stored bytes change.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any, Final, Literal

import numpy as np
import orjson

from profiles.embedding.estimators import encode_vec

__all__ = ["FORMATS", "Format", "blob_format", "pack", "unpack"]

Format = Literal["f32", "f16", "i8"]
FORMATS: Final[tuple[Format, ...]] = ("f32", "f16", "i8")

_TAGS: Final[dict[str, int]] = {"f16": 0x02, "i8": 0x03}
_BY_TAG: Final[dict[int, Format]] = {0x02: "f16", 0x03: "i8"}
_HEADER = struct.Struct("<BHHI")
_I8_MAX = 127.0


def blob_format(blob: bytes) -> Format:
    """The format a stored blob was written in.

    >>> blob_format(b'{"model": "m"}'), blob_format(bytes([2, 0, 0]))
    ('f32', 'f16')
    """
    if blob[:1] == b"{":
        return "f32"
    try:
        return _BY_TAG[blob[0]]
    except (KeyError, IndexError):
        raise ValueError(f"unknown embedding blob format (first byte {blob[:1]!r})") from None


def pack(
    build: Callable[[Callable[[np.ndarray], Any]], dict[str, Any]], dim: int, fmt: Format
) -> bytes:
    """Serialise the object ``build(vec)`` makes, ``vec`` turning each vector into its JSON
    stand-in (base64 float32 for ``f32``, a row number otherwise).

    >>> v = np.array([3.0, -4.0, 0.0])
    >>> for fmt in ("f16", "i8"):
    ...     blob = pack(lambda vec: {"a": vec(v), "b": None}, 3, fmt)
    ...     meta, rows = unpack(blob)
    ...     print(fmt, len(blob), meta, np.allclose(rows[meta["a"]], v, atol=4 / 127))
    f16 39 {'a': 0, 'b': None} True
    i8 36 {'a': 0, 'b': None} True
    """
    if fmt == "f32":
        return orjson.dumps(build(encode_vec))
    rows: list[np.ndarray] = []

    def vec(v: np.ndarray) -> int:
        rows.append(v)
        return len(rows) - 1

    meta = orjson.dumps(build(vec))
    matrix = np.asarray(rows, dtype=np.float64).reshape(len(rows), dim)
    scales = np.max(np.abs(matrix), axis=1) if rows else np.zeros(0)
    x = matrix / np.where(scales > 0.0, scales, 1.0)[:, None]
    salt = zlib.crc32(meta)
    if fmt == "f16":
        values = _f16_stochastic(x, salt)
    elif fmt == "i8":
        values = _i8_stochastic(x, salt)
    else:
        raise ValueError(f"unknown embedding storage format {fmt!r}")
    return b"".join(
        (
            _HEADER.pack(_TAGS[fmt], len(rows), dim, len(meta)),
            meta,
            scales.astype("<f8").tobytes(),
            values.tobytes(),
        )
    )


def _noise(bits: np.ndarray, salt: int, shift: int) -> np.ndarray:
    """``32 - shift`` pseudo-random bits per component, hashed (Fibonacci hashing) from its
    float32 bits and ``salt`` (a checksum of the rest of the state: weights, times). The
    same state always stores the same bytes (replays, re-embedding); a component or a weight
    that changed by any amount draws fresh thresholds, so repeated equal updates are not
    rounded the same way every time."""
    mixed = bits ^ np.uint32(salt & 0xFFFFFFFF)
    return (mixed * np.uint32(0x9E3779B1)) >> np.uint32(shift)


def _f16_stochastic(x: np.ndarray, salt: int = 0) -> np.ndarray:
    """``x`` (in [-1, 1]) rounded to one of its two neighbouring float16 values, the farther
    one with probability equal to the distance from the nearer: unbiased.

    Round-to-nearest would lose every update smaller than half a float16 step: a stored sum
    is read, grows by one event's vector and is written again, and for a heavy user that
    growth is below the step, so the long-term vector would stop moving (measured: cosine
    0.9993 with float32 after 8,000 events; 0.9999 with this rounding). Done on the float32
    bits: add 13 random bits below float16's 10-bit mantissa and cut them off, which leaves a
    float16 value (the cast is then exact; below float16's normal range, under 6e-5 of the
    vector's largest component, it rounds to the nearest subnormal).
    """
    bits = x.astype(np.float32).view(np.uint32)
    cut: np.ndarray = (bits + _noise(bits, salt, 19)) & np.uint32(0xFFFFE000)
    out: np.ndarray = cut.view(np.float32).astype("<f2")
    return out


def _i8_stochastic(x: np.ndarray, salt: int = 0) -> np.ndarray:
    """``x`` (in [-1, 1]) x 127 rounded stochastically (unbiased) to an integer."""
    bits = x.astype(np.float32).view(np.uint32)
    uniform = _noise(bits, salt, 8).astype(np.float64) * (1.0 / (1 << 24))
    return np.floor(x * _I8_MAX + uniform).astype(np.int8)


def unpack(blob: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """The stored object and its vectors as float64 rows (empty for ``f32``, whose vectors
    are inline: decode them with :func:`~profiles.embedding.estimators.decode_vec`)."""
    fmt = blob_format(blob)
    if fmt == "f32":
        return orjson.loads(blob), np.zeros((0, 0))
    _, n, dim, meta_len = _HEADER.unpack_from(blob)
    at = _HEADER.size
    meta: dict[str, Any] = orjson.loads(blob[at : at + meta_len])
    at += meta_len
    scales = np.frombuffer(blob, dtype="<f8", count=n, offset=at)
    at += 8 * n
    if fmt == "f16":
        values = np.frombuffer(blob, dtype="<f2", count=n * dim, offset=at).astype(np.float64)
        factor = scales
    else:
        values = np.frombuffer(blob, dtype=np.int8, count=n * dim, offset=at).astype(np.float64)
        factor = scales / _I8_MAX
    return meta, values.reshape(n, dim) * factor[:, None]
