"""The dead-letter contract: raw bytes kept as they came, headers saying why and whence.

A dead letter must always fit in one produce request, whatever arrived: a 13 MB value or a
999,750-byte header would otherwise make the dead-letter send itself fail (and, before this
bound, end the agent and lose the batch's other dead letters). So every part is bounded:

* the value keeps its first ``value_max`` bytes; when cut, ``dlq.value_bytes`` and
  ``dlq.value_sha256`` give the original length and digest (so the producer's copy can be
  found and checked), and ``dlq.truncated`` names ``value``;
* the key keeps its first :data:`KEY_MAX` bytes (``dlq.key_bytes``, ``dlq.key_sha256``);
* the original headers keep at most :data:`HEADER_VALUE_MAX` bytes of each value and
  :data:`HEADER_KEY_MAX` of each name, in order, until :data:`HEADERS_MAX` bytes in all; the
  rest are dropped. ``dlq.headers_bytes`` and ``dlq.headers_dropped`` say how much there was.

:func:`max_bytes` is the most a dead letter can weigh; the worker refuses to start when the
producer's request size (``RTP_MAX_REQUEST_BYTES``) could not carry it (:func:`check_fits`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

REASON = "dlq.reason"
DETAIL = "dlq.detail"
TOPIC = "dlq.topic"
PARTITION = "dlq.partition"
OFFSET = "dlq.offset"
STAGE = "dlq.stage"
# Only when something was cut (see the module docstring).
TRUNCATED = "dlq.truncated"
VALUE_BYTES = "dlq.value_bytes"
VALUE_SHA256 = "dlq.value_sha256"
KEY_BYTES = "dlq.key_bytes"
KEY_SHA256 = "dlq.key_sha256"
HEADERS_BYTES = "dlq.headers_bytes"
HEADERS_DROPPED = "dlq.headers_dropped"
# Output refused by the broker or the producer (reason ``output_rejected``): which topic.
OUTPUT_TOPIC = "dlq.output_topic"
# An original header whose name is not UTF-8 (reason ``undecodable_record``): the raw name
# in hex, followed by the header ``dlq.raw_header_value`` with its value.
RAW_HEADER_KEY = "dlq.raw_header_key"
RAW_HEADER_VALUE = "dlq.raw_header_value"

MAX_DETAIL = 300
KEY_MAX = 4096
HEADER_KEY_MAX = 256
HEADER_VALUE_MAX = 4096
HEADERS_MAX = 16384
#: Our own ``dlq.*`` headers: names, detail, coordinates, lengths, digests (generous).
OURS_MAX = 2048
#: Record and batch framing around one message (varints, batch header: ~70 bytes).
FRAMING = 512


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter ready to send: every part within its bound."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def max_bytes(value_max: int) -> int:
    """The most a dead letter with values cut at ``value_max`` bytes can weigh."""
    return value_max + KEY_MAX + HEADERS_MAX + OURS_MAX + FRAMING


class DeadLetterTooLarge(ValueError):
    """The producer's request size cannot carry the largest dead letter."""


def check_fits(value_max: int, max_request_bytes: int) -> None:
    """Raise with the fix when the largest dead letter would not fit in one request."""
    need = max_bytes(value_max)
    if need > max_request_bytes:
        raise DeadLetterTooLarge(
            f"a dead letter may weigh up to {need} bytes (a value cut at RTP_MAX_MESSAGE_BYTES="
            f"{value_max}, key {KEY_MAX}, headers {HEADERS_MAX}, ours {OURS_MAX}, framing "
            f"{FRAMING}), more than RTP_MAX_REQUEST_BYTES={max_request_bytes}: raise "
            f"RTP_MAX_REQUEST_BYTES (and the broker's message.max.bytes) or lower "
            f"RTP_MAX_MESSAGE_BYTES"
        )


def _cut_text(text: str, limit: int) -> str:
    """At most ``limit`` UTF-8 bytes of ``text``, never half a character."""
    raw = text.encode("utf-8", "replace")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


def letter(
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    stage: str,
    key: bytes | None,
    value: bytes | None,
    original: Sequence[tuple[str, bytes | None]] = (),
    *,
    value_max: int,
    extra: Sequence[tuple[str, bytes]] = (),
) -> Letter:
    """A bounded dead letter: ours headers first, then the original ones (minus stale
    ``dlq.*``), each part cut to its bound and the cut said in headers."""
    ours = [
        (REASON, reason.encode()),
        (DETAIL, _cut_text(detail, MAX_DETAIL).encode()),
        (TOPIC, topic.encode("utf-8", "replace")),
        (PARTITION, str(partition).encode()),
        (OFFSET, str(offset).encode()),
        (STAGE, stage.encode()),
        *extra,
    ]
    cut: list[str] = []
    if value is not None and len(value) > value_max:
        ours += [(VALUE_BYTES, str(len(value)).encode()), (VALUE_SHA256, _digest(value))]
        value = value[:value_max]
        cut.append("value")
    if key is not None and len(key) > KEY_MAX:
        ours += [(KEY_BYTES, str(len(key)).encode()), (KEY_SHA256, _digest(key))]
        key = key[:KEY_MAX]
        cut.append("key")
    kept, total, dropped, shortened = _bounded_headers(original)
    if dropped or shortened:
        ours += [(HEADERS_BYTES, str(total).encode()), (HEADERS_DROPPED, str(dropped).encode())]
        cut.append("headers")
    if cut:
        ours.append((TRUNCATED, ",".join(cut).encode()))
    if key is None and value is None:
        value = b""  # a null key and null value is a valid record, but not a sendable one
    return Letter(key, value, ours + kept)


def _bounded_headers(
    original: Sequence[tuple[str, bytes | None]],
) -> tuple[list[tuple[str, bytes]], int, int, bool]:
    """(kept headers, original bytes in all, headers dropped, whether any was shortened)."""
    kept: list[tuple[str, bytes]] = []
    room, total, dropped, shortened = HEADERS_MAX, 0, 0, False
    for name, raw in original:
        value = raw or b""
        try:
            name.encode()
        except UnicodeEncodeError:
            # A header name that was not UTF-8 on the wire (see stream/worker/records.py):
            # its raw bytes in hex, then its value, under names every client can read.
            raw_name = _wire(name).hex()[: 2 * HEADER_KEY_MAX]
            original_pairs = [(RAW_HEADER_KEY, raw_name.encode()), (RAW_HEADER_VALUE, value)]
        else:
            original_pairs = [(name, value)]
        for pair in original_pairs:
            room, dropped, shortened = _keep(pair, kept, room, dropped, shortened)
        total += len(_wire(name)) + len(value)
    return kept, total, dropped, shortened


def _wire(name: str) -> bytes:
    """The bytes a header name had on the wire (undecodable bytes were surrogate-escaped)."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogatepass")


def _keep(
    pair: tuple[str, bytes], kept: list[tuple[str, bytes]], room: int, dropped: int, short: bool
) -> tuple[int, int, bool]:
    """Append one original header, cut to its bounds, if it fits in ``room``."""
    name, value = pair
    if name.startswith("dlq.") and name not in (RAW_HEADER_KEY, RAW_HEADER_VALUE):
        return room, dropped, short  # stale headers of an earlier dead letter (a replay)
    short_name = _cut_text(name, HEADER_KEY_MAX)
    short_value = value[:HEADER_VALUE_MAX]
    cost = len(short_name.encode()) + len(short_value)
    if cost > room:
        return room, dropped + 1, short
    kept.append((short_name, short_value))
    return room - cost, dropped, short or short_name != name or len(short_value) != len(value)


SCHEMA_ID = "dlq.schema_id"


def headers(
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    stage: str,
    original: Sequence[tuple[str, bytes]] = (),
    schema_id: int | None = None,
) -> list[tuple[str, bytes]]:
    """Headers of a dead letter whose key and value need no cut (update-stage letters)."""
    extra = [] if schema_id is None else [(SCHEMA_ID, str(schema_id).encode())]
    return letter(
        reason,
        detail,
        topic,
        partition,
        offset,
        stage,
        None,
        None,
        original,
        value_max=0,
        extra=extra,
    ).headers


def parse(raw_headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    """The ``dlq.*`` headers of a consumed dead letter as text."""
    return {
        k: (v or b"").decode("utf-8", "replace") for k, v in raw_headers if k.startswith("dlq.")
    }
