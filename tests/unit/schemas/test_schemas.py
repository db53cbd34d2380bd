"""Event contracts: examples, schema files, reason codes and the time checks of decode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
import pytest

from schemas import validate as v
from schemas.validate import (
    KINDS,
    REASONS,
    USER_KINDS,
    WORKER_REASONS,
    Limits,
    Rejected,
    decode,
    example_message,
    example_paths,
    load_schema,
    validate_output,
)

NOW_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z, after every valid example
LIMITS = Limits()
SCHEMAS_DIR = Path(v.__file__).resolve().parent
SCHEMA_FILES = sorted(SCHEMAS_DIR.glob("*/*.schema.json"))
CLICK: dict[str, Any] = {
    "event_id": "e-1",
    "type": "click",
    "schema_version": 1,
    "user_id": "u-1",
    "ts": NOW_MS - 1000,
    "product_id": "p-1",
}


def _decode(obj: Any, limits: Limits = LIMITS, now_ms: int = NOW_MS) -> dict[str, Any] | Rejected:
    return decode(orjson.dumps(obj), limits, now_ms)


def _reason(obj: Any, **kwargs: Any) -> str | None:
    result = _decode(obj, **kwargs)
    return result.reason if isinstance(result, Rejected) else None


def _click(**changes: Any) -> dict[str, Any]:
    return {**CLICK, **changes}


# -- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", example_paths(valid=True), ids=lambda p: p.name)
def test_valid_example_decodes_unchanged(path: Path) -> None:
    raw, expected = example_message(path)
    assert expected is None
    result = decode(raw, LIMITS, NOW_MS)
    assert isinstance(result, dict), result
    assert result == json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", example_paths(valid=False), ids=lambda p: p.name)
def test_invalid_example_rejected_with_its_reason(path: Path) -> None:
    raw, expected = example_message(path)
    result = decode(raw, LIMITS, NOW_MS)
    assert isinstance(result, Rejected), result
    assert result.reason == expected, result.detail
    assert 0 < len(result.detail) <= v.MAX_DETAIL


def test_valid_examples_cover_every_kind_and_scripts() -> None:
    events = [json.loads(p.read_text(encoding="utf-8")) for p in example_paths(valid=True)]
    assert {e["type"] for e in events} == set(KINDS)
    titles = " ".join(e.get("title", "") + e.get("text", "") for e in events)
    assert "智能手机" in titles and "Отличный" in titles


def test_invalid_examples_cover_the_required_cases() -> None:
    paths = example_paths(valid=False)
    assert len(paths) >= 14
    reasons = {example_message(p)[1] for p in paths}
    # invalid_framing needs Limits(registry_framing=True): tests/unit/schemas/test_framing.py.
    assert set(REASONS) - reasons == {"internal_error", "invalid_framing"}
    raws = {p.stem: example_message(p)[0] for p in paths}
    assert len(raws["oversize_message"]) > LIMITS.max_bytes
    assert b"\\ud800" in raws["lone_surrogate"]


def test_example_paths_leave_out_output_examples() -> None:
    assert all(not p.name.startswith("out_") for p in example_paths(valid=True))
    assert (SCHEMAS_DIR / "examples/valid/out_profile_updated.json").is_file()


# -- schema files -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_file_is_draft07_and_compiles(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["$id"].endswith(path.relative_to(SCHEMAS_DIR).as_posix())
    fastjsonschema.compile(schema)


def test_one_event_schema_per_kind() -> None:
    names = {p.name.removesuffix(".schema.json") for p in (SCHEMAS_DIR / "events").iterdir()}
    assert names == set(KINDS)
    for kind in KINDS:
        schema = load_schema(kind)
        assert schema["properties"]["type"] == {"const": kind}
        assert {"event_id", "type", "schema_version", "user_id", "ts"} <= set(schema["required"])
        assert "additionalProperties" not in schema


def test_kinds() -> None:
    assert len(KINDS) == 9
    assert frozenset(KINDS) - USER_KINDS == {"product"}


def test_load_schema_unknown_name() -> None:
    with pytest.raises(KeyError):
        load_schema("nope")


def test_reasons_documented_and_in_dead_letter_contract() -> None:
    readme = (SCHEMAS_DIR / "README.md").read_text(encoding="utf-8")
    for reason in (*REASONS, *WORKER_REASONS):
        assert f"`{reason}`" in readme
    enum = load_schema("dead_letter")["properties"]["dlq.reason"]["enum"]
    assert set(enum) == {*REASONS, *WORKER_REASONS}


# -- output contracts -------------------------------------------------------------------------


def _profile_updated() -> dict[str, Any]:
    path = SCHEMAS_DIR / "examples/valid/out_profile_updated.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_profile_updated_example_validates() -> None:
    event = _profile_updated()
    validate_output("profile_updated", event)
    assert event["event_id"] == f"{event['user_id']}:{event['version']}"


def test_profile_updated_no_purchase_yet() -> None:
    event = _profile_updated()
    event["rfm"] = {"recency_ts": None, "frequency": 0, "monetary": {}}
    event["top_tags"] = []
    validate_output("profile_updated", event)


@pytest.mark.parametrize(
    "path, value",
    [
        (("version",), 0),
        (("type",), "profile_update"),
        (("top_tags",), [["running"]]),
        (("top_tags",), [["running", -1.0]]),
        (("top_tags",), [["running", 1.0, "x"]]),
        (("rfm", "monetary"), {"usd": 1.0}),
        (("rfm", "frequency"), -1),
        (("counts",), {"wishlist": 1}),
        (("counts",), {"click": 1.5}),
    ],
)
def test_profile_updated_rejects(path: tuple[str, ...], value: Any) -> None:
    event = _profile_updated()
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError, match="profile_updated"):
        validate_output("profile_updated", event)


def test_dead_letter_headers() -> None:
    headers = {
        "dlq.reason": "invalid_json",
        "dlq.detail": "unexpected end of data: line 1 column 40 (char 39)",
        "dlq.topic": "events",
        "dlq.partition": "3",
        "dlq.offset": "1024",
        "dlq.stage": "ingest",
        "traceparent": "00-abc-def-01",
    }
    validate_output("dead_letter", headers)
    for key, bad in [("dlq.stage", "egress"), ("dlq.offset", "-1"), ("dlq.reason", "oops")]:
        with pytest.raises(ValueError):
            validate_output("dead_letter", {**headers, key: bad})
    with pytest.raises(ValueError):
        validate_output("dead_letter", {**headers, "dlq.partition": 3})


# -- decode: ordering, edge cases and time checks ---------------------------------------------


@pytest.mark.parametrize("raw", [None, b""])
def test_empty_message(raw: bytes | None) -> None:
    assert decode(raw, LIMITS, NOW_MS) == Rejected(
        "empty_message", "message value is null or empty"
    )


def test_size_limit_is_inclusive() -> None:
    raw = orjson.dumps(CLICK)
    assert isinstance(decode(raw, Limits(max_bytes=len(raw)), NOW_MS), dict)
    rejected = decode(raw, Limits(max_bytes=len(raw) - 1), NOW_MS)
    assert isinstance(rejected, Rejected) and rejected.reason == "oversize_message"


def test_time_bounds() -> None:
    limits = Limits(max_future_ms=1000, earliest_ms=NOW_MS - 10_000)
    assert _reason(_click(ts=NOW_MS + 1000), limits=limits) is None
    assert _reason(_click(ts=NOW_MS + 1001), limits=limits) == "event_time_in_future"
    assert _reason(_click(ts=NOW_MS - 10_000), limits=limits) is None
    assert _reason(_click(ts=NOW_MS - 10_001), limits=limits) == "event_time_too_old"
    assert _reason(_click(ts=946684800000 - 1)) == "event_time_too_old"
    assert _reason(_click(ts=NOW_MS + 300_001)) == "event_time_in_future"
    # Beyond the schema's year-2100 bound the schema answers first.
    assert _reason(_click(ts=4102444800001)) == "schema_violation"


def test_time_is_judged_against_the_given_now() -> None:
    event = _click(ts=NOW_MS)
    assert _reason(event, now_ms=NOW_MS - 300_000) is None
    assert _reason(event, now_ms=NOW_MS - 300_001) == "event_time_in_future"


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"schema_version": 2, "type": "wishlist"}, "unsupported_schema_version"),
        ({"schema_version": 0}, "unsupported_schema_version"),
        ({"schema_version": 1.5}, "unsupported_schema_version"),
        ({"schema_version": "1"}, "schema_violation"),
        ({"schema_version": True}, "schema_violation"),
        ({"schema_version": None}, "schema_violation"),
        ({"type": None}, "unknown_event_type"),
        ({"type": ["click"]}, "unknown_event_type"),
        ({"type": {"k": 1}}, "unknown_event_type"),
        ({"type": "CLICK"}, "unknown_event_type"),
        ({"user_id": ""}, "schema_violation"),
        ({"event_id": "x" * 129}, "schema_violation"),
        ({"ts": True}, "schema_violation"),
        ({"ts": 1.5e12 + 0.5}, "schema_violation"),
        ({"ts": -1}, "schema_violation"),
        ({"category": []}, "schema_violation"),
        ({"category": ["a"] * 9}, "schema_violation"),
        ({"price": "9.99"}, "schema_violation"),
        ({"session_id": "s\x07"}, "invalid_text"),
        ({"product_id": "p\x7f"}, None),  # DEL is not C0
        ({"title": "a\tb\nc\r"}, None),
        ({"title": "עברית\u202e\u200f 👨\u200d👩\u200d👧 \ufeff\u2028"}, None),
        ({"referrer": "x\x00y"}, None),  # unknown fields are the consumer's business
    ],
)
def test_decode_edge_cases(changes: dict[str, Any], reason: str | None) -> None:
    event = {k: val for k, val in _click(**changes).items() if val is not None}
    assert _reason(event) == reason


def test_schema_version_checked_before_type() -> None:
    result = _decode({"type": "wishlist", "schema_version": 2})
    assert isinstance(result, Rejected) and result.reason == "unsupported_schema_version"


def test_integral_floats_become_ints() -> None:
    event = {
        **CLICK,
        "type": "purchase",
        "schema_version": 1.0,
        "ts": float(CLICK["ts"]),
        "order_id": "o-1",
        "items": [{"product_id": "p-1", "quantity": 2.0, "price": 1}],
        "amount": 2,
        "currency": "EUR",
    }
    result = _decode(event)
    assert isinstance(result, dict)
    assert type(result["ts"]) is int and type(result["schema_version"]) is int
    assert type(result["items"][0]["quantity"]) is int
    for kind, field, value in [("add_to_cart", "quantity", 3.0), ("review", "rating", 4.0)]:
        extra = {"text": ""} if kind == "review" else {}
        result = _decode({**CLICK, "type": kind, field: value, **extra})
        assert isinstance(result, dict) and type(result[field]) is int


def test_invalid_text_detail_names_the_path() -> None:
    event = {
        **CLICK,
        "type": "purchase",
        "order_id": "o-1",
        "items": [
            {"product_id": "p-1", "quantity": 1, "price": 1},
            {"product_id": "p-2", "quantity": 1, "price": 1, "category": ["ok", "b\x1fad"]},
        ],
        "amount": 2,
        "currency": "EUR",
    }
    assert _decode(event) == Rejected(
        "invalid_text", "items[1].category[1] contains control character U+001F at 1"
    )


def test_long_details_are_trimmed() -> None:
    result = _decode(_click(type="t" * 1000))
    assert isinstance(result, Rejected) and result.reason == "unknown_event_type"
    assert len(result.detail) == v.MAX_DETAIL and result.detail.endswith("...")


def test_invalid_utf8_wins_over_invalid_json() -> None:
    result = decode(b'{"a": "\xc3\x28", ', LIMITS, NOW_MS)
    assert isinstance(result, Rejected) and result.reason == "invalid_utf8"
    result = decode(b'{"a": "\xed\xa0\x80"}', LIMITS, NOW_MS)  # UTF-8-encoded surrogate
    assert isinstance(result, Rejected) and result.reason == "invalid_utf8"


def test_unexpected_error_becomes_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(v._VALIDATORS, "click", broken)
    assert _decode(CLICK) == Rejected("internal_error", "RuntimeError: boom")
