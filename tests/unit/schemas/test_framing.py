"""Schema-registry framing: accepted only with the setting, schema id kept on rejections."""

from __future__ import annotations

import orjson
import pytest

from schemas import framing
from schemas.validate import Limits, Rejected, decode

NOW_MS = 1_735_689_600_000
ON = Limits(registry_framing=True)
CLICK = orjson.dumps(
    {
        "event_id": "e-1",
        "type": "click",
        "schema_version": 1,
        "user_id": "u-1",
        "ts": NOW_MS - 1000,
        "product_id": "p-1",
    }
)
SEGMENT = orjson.dumps(
    {
        "type": "track",
        "event": "Product Viewed",
        "messageId": "m-1",
        "userId": "u-1",
        "timestamp": "2024-05-01T10:00:00Z",
        "properties": {"product_id": "p-1"},
    }
)


def test_frame_layout() -> None:
    assert framing.frame(b"{}", 258) == b"\x00\x00\x00\x01\x02{}"
    assert framing.unframe(framing.frame(b"{}", 2**32 - 1)) == (b"{}", 2**32 - 1)


@pytest.mark.parametrize("payload", [CLICK, SEGMENT])
def test_framed_values_decode_like_plain_ones(payload: bytes) -> None:
    plain = decode(payload, ON, NOW_MS)
    assert isinstance(plain, dict)
    assert decode(framing.frame(payload, 42), ON, NOW_MS) == plain


def test_plain_json_still_accepted_with_framing_on() -> None:
    assert isinstance(decode(CLICK, ON, NOW_MS), dict)


def test_framing_off_by_default_with_a_hint() -> None:
    result = decode(framing.frame(CLICK, 42), Limits(), NOW_MS)
    assert isinstance(result, Rejected)
    assert result.reason == "invalid_json"
    assert "RTP_REGISTRY_FRAMING=accept" in result.detail
    assert result.schema_id is None


def test_wrong_magic_byte_is_not_framing() -> None:
    result = decode(b"\x01\x00\x00\x00\x07" + CLICK, ON, NOW_MS)
    assert isinstance(result, Rejected)
    assert (result.reason, result.schema_id) == ("invalid_json", None)


@pytest.mark.parametrize("raw", [b"\x00", b"\x00\x00\x00\x07", b"\x00\x00\x00\x00\x07"])
def test_too_short_or_no_payload(raw: bytes) -> None:
    result = decode(raw, ON, NOW_MS)
    assert isinstance(result, Rejected)
    assert result.reason == "invalid_framing"
    assert result.detail


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (b"[1, 2]", "not_an_object"),
        (framing.frame(CLICK, 1), "invalid_json"),  # framed twice
        (b'{"type": "group", "userId": "u"}', "unsupported_segment_event"),
        (CLICK.replace(b'"u-1"', b'"u\\u0000"'), "invalid_text"),
    ],
)
def test_rejected_framed_values_carry_the_schema_id(payload: bytes, reason: str) -> None:
    result = decode(framing.frame(payload, 123456), ON, NOW_MS)
    assert isinstance(result, Rejected)
    assert (result.reason, result.schema_id) == (reason, 123456), result.detail


def test_size_limit_counts_the_header() -> None:
    limits = Limits(max_bytes=len(CLICK) + 4, registry_framing=True)
    result = decode(framing.frame(CLICK, 1), limits, NOW_MS)
    assert isinstance(result, Rejected) and result.reason == "oversize_message"
