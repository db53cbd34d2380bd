"""Decode and validate raw Kafka event values against the schema_version 1 contracts.

``decode`` is on the per-event hot path: it never raises, it returns either the
event as a dict or a ``Rejected`` with a stable reason code (see ``REASONS``).
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import fastjsonschema
import orjson

from schemas import framing, segment
from schemas.kinds import USER_KINDS

__all__ = [
    "KINDS",
    "MAX_AMOUNT",
    "MAX_PRICE",
    "REASONS",
    "USER_KINDS",
    "WORKER_REASONS",
    "Limits",
    "Rejected",
    "decode",
    "example_message",
    "example_paths",
    "load_schema",
    "validate_output",
]

_ROOT: Final = Path(__file__).resolve().parent
_EVENTS_DIR: Final = _ROOT / "events"
_OUTPUTS_DIR: Final = _ROOT / "outputs"
_EXAMPLES_DIR: Final = _ROOT / "examples"

KINDS: Final[tuple[str, ...]] = (
    "click",
    "add_to_cart",
    "purchase",
    "review",
    "search",
    "product",
    "user_erasure",
    "refund",
    "remove_from_cart",
)

SCHEMA_VERSION: Final = 1

REASONS: Final[tuple[str, ...]] = (
    "empty_message",
    "oversize_message",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "unknown_event_type",
    "unsupported_schema_version",
    "schema_violation",
    "invalid_text",
    "event_time_in_future",
    "event_time_too_old",
    # Last resort for a bug in this module; decode must not crash the worker.
    "internal_error",
    *framing.REASONS,
    *segment.REASONS,
)

#: Reasons the stream worker sets itself (never returned by ``decode``): an event later than
#: the lateness bound, a record the Kafka client could not decode, an output the producer or
#: broker refused (see ``stream/worker``).
WORKER_REASONS: Final[tuple[str, ...]] = ("too_late", "undecodable_record", "output_rejected")

MAX_DETAIL: Final = 300

#: Money bounds of the schemas (event currency units): a unit ``price`` (click, add_to_cart,
#: product, purchase items) and a purchase's ``amount``. Larger values are a
#: ``schema_violation`` of their own event; profiles sum spend in integer cents and saturate
#: at ``profiles.core.profile.MAX_SUM`` (tests check the schemas carry exactly these).
MAX_PRICE: Final = 100_000_000
MAX_AMOUNT: Final = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-deployment bounds applied by ``decode``."""

    max_bytes: int = 65536
    max_future_ms: int = 300_000
    earliest_ms: int = 946684800000  # 2000-01-01T00:00:00Z
    # Confluent wire format (magic byte 0, 4-byte schema id, JSON); see schemas/framing.py.
    registry_framing: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a message was refused: a stable code and a short explanation."""

    reason: str
    detail: str
    schema_id: int | None = None  # the registry schema id of a framed value


Validator = Callable[[Any], Any]


def load_schema(name: str) -> dict[str, Any]:
    """Load ``events/<name>.schema.json`` or, failing that, ``outputs/<name>.schema.json``."""
    for folder in (_EVENTS_DIR, _OUTPUTS_DIR):
        path = folder / f"{name}.schema.json"
        if path.is_file():
            schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return schema
    raise KeyError(f"no schema named {name!r}")


def output_schemas() -> dict[str, dict[str, Any]]:
    """Every output event's schema (``outputs/<name>.schema.json``), by name."""
    return {
        path.name.removesuffix(".schema.json"): load_schema(path.name.removesuffix(".schema.json"))
        for path in sorted(_OUTPUTS_DIR.glob("*.schema.json"))
    }


@functools.cache
def _output_validator(name: str) -> Validator:
    validator: Validator = fastjsonschema.compile(load_schema(name))
    return validator


def validate_output(name: str, obj: Any) -> None:
    """Check an output event (e.g. ``profile_updated``) against its schema; ValueError if not."""
    try:
        _output_validator(name)(obj)
    except fastjsonschema.JsonSchemaException as exc:
        raise ValueError(f"{name}: {_trim(str(exc))}") from exc


def example_paths(valid: bool) -> list[Path]:
    """Example *input* events, sorted; output examples (``out_*.json``) are left out."""
    folder = _EXAMPLES_DIR / ("valid" if valid else "invalid")
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith("out_"))


def example_message(path: Path) -> tuple[bytes, str | None]:
    """The Kafka value bytes of an example and its expected reason (None for valid ones).

    Invalid examples are ``{"expect_reason": ..., "raw": ...}``: ``raw`` is serialized with
    orjson, unless it is ``{"base64": ...}``, which carries bytes JSON cannot hold.
    """
    data = path.read_bytes()
    if path.parent.name != "invalid":
        return data, None
    entry = orjson.loads(data)
    raw = entry["raw"]
    if isinstance(raw, dict) and raw.keys() == {"base64"}:
        return base64.b64decode(raw["base64"], validate=True), entry["expect_reason"]
    return orjson.dumps(raw), entry["expect_reason"]


# Compiled once at import: a few ms in total, then each call is plain Python code.
_VALIDATORS: Final[dict[str, Validator]] = {
    kind: fastjsonschema.compile(load_schema(kind)) for kind in KINDS
}

# Fields whose strings reach profiles, keywords or logs; unknown extra fields are not checked.
_TEXT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "click": ("event_id", "user_id", "session_id", "product_id", "title"),
    "add_to_cart": ("event_id", "user_id", "session_id", "product_id", "title"),
    "purchase": ("event_id", "user_id", "session_id", "order_id"),
    "review": ("event_id", "user_id", "session_id", "product_id", "title", "text"),
    "search": ("event_id", "user_id", "session_id", "query"),
    "product": ("event_id", "user_id", "session_id", "product_id", "title", "brand"),
    "user_erasure": ("event_id", "user_id", "session_id", "requested_by", "reason"),
    "refund": ("event_id", "user_id", "session_id", "order_id", "reason"),
    "remove_from_cart": ("event_id", "user_id", "session_id", "product_id", "title"),
}
_ITEM_TEXT_FIELDS: Final = ("product_id", "title")
# JSON Schema counts 1.0 as an integer; these are coerced so consumers always get int.
_KIND_INT_FIELDS: Final = {
    "add_to_cart": ("quantity",),
    "remove_from_cart": ("quantity",),
    "review": ("rating",),
}
_INT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    kind: ("ts", "schema_version", *_KIND_INT_FIELDS.get(kind, ())) for kind in KINDS
}

# C0 controls other than \t \n \r.
_CONTROL: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _trim(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _control_at(value: str) -> int:
    """Index of the first forbidden control character, or -1."""
    # isprintable() is a C-level scan that passes almost every real string; the regex
    # only runs for the rest (\n, \t, ZWJ, RTL marks... and the real offenders).
    if value.isprintable():
        return -1
    match = _CONTROL.search(value)
    return -1 if match is None else match.start()


def _rejected_text(path: str, value: str, at: int) -> Rejected:
    code = ord(value[at])
    return Rejected("invalid_text", f"{path} contains control character U+{code:04X} at {at}")


def _bad_text_in(obj: dict[str, Any], fields: tuple[str, ...], prefix: str) -> Rejected | None:
    get = obj.get
    for field in fields:
        value = get(field)
        if value is not None and (at := _control_at(value)) >= 0:
            return _rejected_text(prefix + field, value, at)
    for i, entry in enumerate(get("category") or ()):
        if (at := _control_at(entry)) >= 0:
            return _rejected_text(f"{prefix}category[{i}]", entry, at)
    return None


def _bad_text(obj: dict[str, Any], kind: str) -> Rejected | None:
    """First checked text field of a schema-valid event holding a C0 control, if any."""
    bad = _bad_text_in(obj, _TEXT_FIELDS[kind], "")
    if bad is None and kind in ("purchase", "refund"):
        for i, item in enumerate(obj.get("items", ())):
            bad = _bad_text_in(item, _ITEM_TEXT_FIELDS, f"items[{i}].")
            if bad is not None:
                break
    return bad


def _coerce_ints(obj: dict[str, Any], kind: str) -> None:
    """Turn schema-valid integral floats (e.g. ``ts: 1.7e12``) into ints, in place."""
    for field in _INT_FIELDS[kind]:
        value = obj[field]
        if type(value) is not int:
            obj[field] = int(value)
    if kind in ("purchase", "refund"):
        for item in obj.get("items", ()):
            if type(item["quantity"]) is not int:
                item["quantity"] = int(item["quantity"])


def _parse_error(raw: bytes, exc: orjson.JSONDecodeError) -> Rejected:
    # orjson reports bad UTF-8 and bad JSON alike; only a failing parse pays for this decode.
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError as bad:
        return Rejected("invalid_utf8", f"invalid UTF-8 at byte {bad.start}: {bad.reason}")
    if raw[:1] == b"\x00":
        hint = "value starts with byte 0: schema-registry framing? (RTP_REGISTRY_FRAMING=accept)"
        return Rejected("invalid_json", hint)
    return Rejected("invalid_json", _trim(str(exc)))


def _check(obj: dict[str, Any], limits: Limits, now_ms: int) -> dict[str, Any] | Rejected:
    # Version first: a v2 event may carry kinds or fields v1 cannot judge.
    version = obj.get("schema_version")
    if type(version) in (int, float) and version != SCHEMA_VERSION:
        return Rejected("unsupported_schema_version", _trim(f"schema_version {version!r} != 1"))
    kind = obj.get("type")
    if type(kind) is not str:
        if kind is None:
            return Rejected("unknown_event_type", "missing 'type'")
        return Rejected("unknown_event_type", f"'type' must be a string, got {_json_type(kind)}")
    validator = _VALIDATORS.get(kind)
    if validator is None:
        return Rejected("unknown_event_type", _trim(f"unknown event type {kind!r}"))
    try:
        validator(obj)
    except fastjsonschema.JsonSchemaException as exc:
        return Rejected("schema_violation", _trim(str(exc)))
    _coerce_ints(obj, kind)
    bad = _bad_text(obj, kind)
    if bad is not None:
        return bad
    return _bad_time(obj["ts"], limits, now_ms) or obj


def decode(raw: bytes | None, limits: Limits, now_ms: int) -> dict[str, Any] | Rejected:
    """Parse and validate one message value; never raises.

    Checks run in this order, first failure wins: empty, size, registry framing (when
    ``limits.registry_framing``), UTF-8/JSON, object, schema_version, type, schema, control
    characters, event time. A Segment-spec call (``type`` track, page, ...) is translated
    into our event by ``schemas.segment`` first; a refusal there is the result.
    """
    if not raw:
        return Rejected("empty_message", "message value is null or empty")
    size = len(raw)
    if size > limits.max_bytes:
        return Rejected("oversize_message", f"{size} bytes > max_bytes {limits.max_bytes}")
    if limits.registry_framing and framing.is_framed(raw):
        return _decode_framed(raw, limits, now_ms)
    return _decode_value(raw, limits, now_ms)


def _decode_framed(raw: bytes, limits: Limits, now_ms: int) -> dict[str, Any] | Rejected:
    unframed = framing.unframe(raw)
    if isinstance(unframed, str):
        return Rejected("invalid_framing", unframed)
    result = _decode_value(unframed.payload, limits, now_ms)
    if isinstance(result, Rejected):
        return Rejected(result.reason, result.detail, unframed.schema_id)
    return result


def _check_link(event: dict[str, Any], limits: Limits, now_ms: int) -> dict[str, Any] | Rejected:
    """An ``identify`` / ``alias`` link (schema-checked by ``schemas.segment_identity``): its
    ids and its event time bounded like any event's."""
    bad = _bad_text_in(event, ("event_id", "user_id", "anonymous_id"), "")
    if bad is not None:
        return bad
    return _bad_time(event["ts"], limits, now_ms) or event


def _bad_time(ts: int, limits: Limits, now_ms: int) -> Rejected | None:
    if ts > now_ms + limits.max_future_ms:
        return Rejected(
            "event_time_in_future",
            f"ts {ts} is {ts - now_ms} ms ahead of now (max {limits.max_future_ms})",
        )
    if ts < limits.earliest_ms:
        return Rejected("event_time_too_old", f"ts {ts} < earliest_ms {limits.earliest_ms}")
    return None


def _check_segment(obj: dict[str, Any], limits: Limits, now_ms: int) -> dict[str, Any] | Rejected:
    event = segment.translate(obj)
    if isinstance(event, segment.Refusal):
        return Rejected(event.reason, _trim(event.detail))
    if event["type"] == "identify":
        return _check_link(event, limits, now_ms)
    if "anonymous_id" in event:
        bad = _bad_text_in(event, ("anonymous_id",), "")
        if bad is not None:
            return bad
    checked = _check(event, limits, now_ms)
    if isinstance(checked, Rejected):
        detail = f"Segment {obj['type']} as {event['type']}: {checked.detail}"
        return Rejected(checked.reason, _trim(detail))
    return checked


def _decode_value(raw: bytes, limits: Limits, now_ms: int) -> dict[str, Any] | Rejected:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _parse_error(raw, exc)
    if type(obj) is not dict:
        return Rejected("not_an_object", f"top-level JSON value is {_json_type(obj)}, not object")
    try:
        kind = obj.get("type")
        if type(kind) is str and kind in segment.TYPES:  # a Segment/RudderStack-spec call
            return _check_segment(obj, limits, now_ms)
        return _check(obj, limits, now_ms)
    except Exception as exc:  # a bug here must become a dead letter, not a crashed worker
        return Rejected("internal_error", _trim(f"{type(exc).__name__}: {exc}"))
