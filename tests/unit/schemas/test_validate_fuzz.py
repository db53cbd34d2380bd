"""Property tests: decode never raises, and whatever it accepts honours the common contract."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.validate import (
    KINDS,
    MAX_DETAIL,
    REASONS,
    Limits,
    Rejected,
    decode,
    example_paths,
)

NOW_MS = 1_735_689_600_000
LIMITS = Limits()
FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,  # keep the tree free of a .hypothesis/ folder
    suppress_health_check=[HealthCheck.too_slow],
)
VALID = [json.loads(p.read_text(encoding="utf-8")) for p in example_paths(valid=True)]
COMMON_KEYS = ("event_id", "type", "schema_version", "user_id", "ts", "session_id")
# Emoji, ZWJ sequence, RTL override and marks, BOM, combining mark, line separator, C0 controls.
ODD = [
    "😀",
    "👨\u200d👩\u200d👧",
    "\u202e",
    "\u200f",
    "\ufeff",
    "e\u0301",
    "\u2028",
    "\x00",
    "\x1b",
]
CONTROLS = {"\x00", "\x1b"}
CHECKED_TEXT = {
    "event_id",
    "user_id",
    "session_id",
    "product_id",
    "title",
    "text",
    "query",
    "order_id",
    "brand",
    "requested_by",
    "reason",
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["click", "purchase", "USD", "", 1, 1.0, 0, NOW_MS])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(COMMON_KEYS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


def _check_result(result: dict[str, Any] | Rejected) -> None:
    if isinstance(result, Rejected):
        assert result.reason in REASONS and result.reason != "internal_error", result
        assert isinstance(result.detail, str) and 0 < len(result.detail) <= MAX_DETAIL
        return
    assert isinstance(result, dict)
    for key in ("event_id", "user_id"):
        assert type(result[key]) is str and 1 <= len(result[key]) <= 128
    assert result["type"] in KINDS
    assert type(result["schema_version"]) is int and result["schema_version"] == 1
    ts = result["ts"]
    assert type(ts) is int and LIMITS.earliest_ms <= ts <= NOW_MS + LIMITS.max_future_ms


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes(raw: bytes) -> None:
    _check_result(decode(raw, LIMITS, NOW_MS))


@FUZZ
@given(st.binary(max_size=64), st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_small_limits(raw: bytes, max_bytes: int) -> None:
    _check_result(decode(raw, Limits(max_bytes=max_bytes), NOW_MS))


@FUZZ
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    _check_result(decode(orjson.dumps(value), LIMITS, NOW_MS))


@FUZZ
@given(st.sampled_from(VALID), st.dictionaries(st.sampled_from(COMMON_KEYS), json_values))
def test_common_fields_replaced(event: dict[str, Any], changes: dict[str, Any]) -> None:
    _check_result(decode(orjson.dumps({**event, **changes}), LIMITS, NOW_MS))


def _string_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, item in value.items() for p in _string_paths(item, (*path, k))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _string_paths(item, (*path, i))]
    return []


def _all_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    children: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        items = ()
    for key, item in items:
        children += [(*path, key), *_all_paths(item, (*path, key))]
    return children


def _parent(root: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        root = root[key]
    return root


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], str, tuple[Any, ...], str]:
    """A valid example with one field dropped, retyped, or with odd unicode inserted."""
    event = copy.deepcopy(draw(st.sampled_from(VALID)))
    op = draw(st.sampled_from(["drop", "retype", "unicode"]))
    inserted = ""
    if op == "unicode":
        path = draw(st.sampled_from(_string_paths(event)))
        parent = _parent(event, path)
        text = parent[path[-1]]
        at = draw(st.integers(min_value=0, max_value=len(text)))
        inserted = draw(st.sampled_from(ODD))
        parent[path[-1]] = text[:at] + inserted + text[at:]
    else:
        path = draw(st.sampled_from(_all_paths(event)))
        parent = _parent(event, path)
        if op == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return event, op, path, inserted


def _checked(path: tuple[Any, ...]) -> bool:
    """Whether decode inspects the string at path for control characters."""
    last = path[-1]
    if path[0] == "items":
        return (len(path) == 3 and last in ("product_id", "title")) or path[-2] == "category"
    return (len(path) == 1 and last in CHECKED_TEXT) or (len(path) == 2 and path[0] == "category")


@FUZZ
@given(mutated())
def test_mutated_examples(case: tuple[dict[str, Any], str, tuple[Any, ...], str]) -> None:
    event, op, path, inserted = case
    result = decode(orjson.dumps(event), LIMITS, NOW_MS)
    _check_result(result)
    if inserted in CONTROLS and _checked(path):
        assert isinstance(result, Rejected)
        assert result.reason in ("invalid_text", "schema_violation"), result
    elif op == "unicode" and path[0] != "type" and path[0] != "currency":
        # Printable oddities (emoji, RTL, ZWJ...) are fine wherever length limits allow.
        assert not isinstance(result, Rejected) or result.reason == "schema_violation", result


@FUZZ
@given(st.sampled_from(VALID))
def test_valid_examples_round_trip(event: dict[str, Any]) -> None:
    assert decode(orjson.dumps(event), LIMITS, NOW_MS) == event


@FUZZ
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=3)), min_size=1, max_size=4),
)
def test_byte_splices(event: dict[str, Any], splices: list[tuple[int, bytes]]) -> None:
    """Overwrite a few byte runs of a valid message: broken UTF-8, JSON and values alike."""
    raw = bytearray(orjson.dumps(event))
    for at, chunk in splices:
        start = at % len(raw)
        raw[start : start + len(chunk)] = chunk
    _check_result(decode(bytes(raw), LIMITS, NOW_MS))
