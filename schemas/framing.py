"""Schema-registry framing (the Confluent wire format) around JSON values.

A framed value is ``0x00`` (magic byte), a 4-byte big-endian schema id, then the JSON
payload. JSON text never starts with a NUL byte, so with framing accepted a value is
read as framed exactly when its first byte is 0, and plain JSON keeps working.
"""

from __future__ import annotations

from typing import Final, NamedTuple

MAGIC: Final = 0
HEADER_BYTES: Final = 5
MODES: Final[tuple[str, ...]] = ("off", "accept")
REASONS: Final[tuple[str, ...]] = ("invalid_framing",)


class Unframed(NamedTuple):
    """The JSON payload of a framed value and its registry schema id."""

    payload: bytes
    schema_id: int


def is_framed(raw: bytes) -> bool:
    """Whether ``raw`` (non-empty) starts with the magic byte."""
    return raw[0] == MAGIC


def unframe(raw: bytes) -> Unframed | str:
    """Split a value that starts with the magic byte; a problem comes back as a detail text."""
    if len(raw) < HEADER_BYTES:
        return f"framed value is {len(raw)} bytes, shorter than the {HEADER_BYTES}-byte header"
    schema_id = int.from_bytes(raw[1:HEADER_BYTES], "big")
    if len(raw) == HEADER_BYTES:
        return f"framed value (schema id {schema_id}) has no payload"
    return Unframed(raw[HEADER_BYTES:], schema_id)


def frame(payload: bytes, schema_id: int) -> bytes:
    """Wrap a JSON payload the way a Confluent JSON serializer does (for producers and tests)."""
    return bytes([MAGIC]) + schema_id.to_bytes(4, "big") + payload
