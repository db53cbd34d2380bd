"""Dead letters always fit: every part bounded, every cut said in headers."""

from __future__ import annotations

import hashlib

import pytest

from schemas.validate import validate_output
from stream.settings import Settings, SettingsError
from stream.worker import dead_letters as dl

VALUE_MAX = 65536


def _letter(**kw: object) -> dl.Letter:
    args: dict[str, object] = {
        "key": b"k",
        "value": b"v",
        "original": (),
        "value_max": VALUE_MAX,
        **kw,
    }
    return dl.letter("oversize_message", "too big", "in", 3, 42, "ingest", **args)  # type: ignore[arg-type]


def _size(letter: dl.Letter) -> int:
    heads = sum(len(k.encode()) + len(v) for k, v in letter.headers)
    return len(letter.key or b"") + len(letter.value or b"") + heads


def test_small_letter_is_unchanged_and_says_nothing_was_cut() -> None:
    letter = _letter(original=[("traceparent", b"00-a-b-01")])
    assert (letter.key, letter.value) == (b"k", b"v")
    names = dict(letter.headers)
    assert names[dl.REASON] == b"oversize_message" and names[dl.OFFSET] == b"42"
    assert names["traceparent"] == b"00-a-b-01"
    assert dl.TRUNCATED not in names
    validate_output("dead_letter", dl.parse(letter.headers) | {"traceparent": "00-a-b-01"})


@pytest.mark.parametrize("size", [VALUE_MAX - 1, VALUE_MAX, VALUE_MAX + 1, 13_000_000])
def test_value_keeps_a_bounded_prefix_with_length_and_digest(size: int) -> None:
    value = bytes(i % 251 for i in range(size))
    letter = _letter(value=value)
    assert letter.value == value[:VALUE_MAX]
    names = dl.parse(letter.headers)
    if size <= VALUE_MAX:
        assert dl.TRUNCATED not in names
        return
    assert names[dl.TRUNCATED] == "value"
    assert names[dl.VALUE_BYTES] == str(size)
    assert names[dl.VALUE_SHA256] == hashlib.sha256(value).hexdigest()
    validate_output("dead_letter", names)


def test_key_is_cut_too() -> None:
    key = b"u" * 999_000
    letter = _letter(key=key)
    assert letter.key == key[: dl.KEY_MAX]
    names = dl.parse(letter.headers)
    assert names[dl.TRUNCATED] == "key"
    assert names[dl.KEY_BYTES] == "999000"
    assert names[dl.KEY_SHA256] == hashlib.sha256(key).hexdigest()


def test_a_999750_byte_header_is_cut_and_the_cut_said() -> None:
    letter = _letter(value=b"oops", original=[("big", b"x" * 999_750), ("small", b"s")])
    names = dict(letter.headers)
    assert names["big"] == b"x" * dl.HEADER_VALUE_MAX
    assert names["small"] == b"s"
    parsed = dl.parse(letter.headers)
    assert parsed[dl.TRUNCATED] == "headers"
    assert parsed[dl.HEADERS_BYTES] == str(3 + 999_750 + 5 + 1)
    assert parsed[dl.HEADERS_DROPPED] == "0"
    validate_output("dead_letter", parsed)


def test_many_headers_stop_at_the_total_bound() -> None:
    original = [(f"h{i}", b"y" * 1000) for i in range(100)]
    letter = _letter(original=original)
    kept = [k for k, _ in letter.headers if k.startswith("h")]
    assert kept == [f"h{i}" for i in range(len(kept))]  # in order, a prefix
    assert sum(len(k) + 1000 for k in kept) <= dl.HEADERS_MAX
    assert int(dl.parse(letter.headers)[dl.HEADERS_DROPPED]) == 100 - len(kept)


def test_long_header_names_are_cut_on_a_character_boundary() -> None:
    letter = _letter(original=[("名" * 200, b"v")])
    name = next(k for k, _ in letter.headers if not k.startswith("dlq."))
    assert len(name.encode()) <= dl.HEADER_KEY_MAX and set(name) == {"名"}


def test_stale_dlq_headers_of_a_replayed_letter_are_replaced() -> None:
    letter = _letter(original=[(dl.REASON, b"old"), (dl.OFFSET, b"1")])
    assert [v for k, v in letter.headers if k == dl.REASON] == [b"oversize_message"]


def test_a_header_name_that_was_not_utf8_is_kept_as_hex_and_value() -> None:
    bad = b"\xff\xfekey".decode("utf-8", "surrogateescape")
    letter = _letter(original=[(bad, b"val"), ("ok", b"1")])
    assert (dl.RAW_HEADER_KEY, b"fffe6b6579") in letter.headers
    at = letter.headers.index((dl.RAW_HEADER_KEY, b"fffe6b6579"))
    assert letter.headers[at + 1] == (dl.RAW_HEADER_VALUE, b"val")
    for name, _ in letter.headers:
        name.encode()  # every name can be sent
    validate_output("dead_letter", dl.parse(letter.headers) | {"ok": "1"})


def test_every_letter_fits_the_bound() -> None:
    worst = _letter(
        key=b"k" * 10**6,
        value=b"v" * 10**7,
        original=[(f"{'n' * 300}{i}", b"x" * 10**5) for i in range(50)],
        extra=[(dl.OUTPUT_TOPIC, b"t" * 249)],
    )
    assert _size(worst) <= dl.max_bytes(VALUE_MAX) - dl.FRAMING


def test_detail_is_bounded() -> None:
    letter = dl.letter("x", "é" * 1000, "in", 0, 0, "ingest", None, b"v", value_max=10)
    assert len(dict(letter.headers)[dl.DETAIL]) <= dl.MAX_DETAIL


def test_request_size_must_hold_the_largest_dead_letter() -> None:
    dl.check_fits(VALUE_MAX, 1_000_000)
    with pytest.raises(dl.DeadLetterTooLarge, match="RTP_MAX_REQUEST_BYTES"):
        dl.check_fits(VALUE_MAX, 70_000)
    with pytest.raises(SettingsError, match="RTP_MAX_REQUEST_BYTES=80000"):
        Settings.from_env({"RTP_MAX_REQUEST_BYTES": "80000"})
    with pytest.raises(SettingsError, match="RTP_MAX_MESSAGE_BYTES"):
        Settings.from_env({"RTP_MAX_MESSAGE_BYTES": str(2 * 10**6)})
    assert (
        Settings.from_env({"RTP_MAX_REQUEST_BYTES": "2000000"}).ingest.max_request_bytes
        == 2_000_000
    )


def test_null_key_and_null_value_become_an_empty_value() -> None:
    # aiokafka refuses to send a message with neither key nor value.
    letter = dl.letter("empty_message", "null", "in", 0, 7, "ingest", None, None, value_max=10)
    assert (letter.key, letter.value) == (None, b"")
