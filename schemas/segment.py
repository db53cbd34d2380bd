"""Segment / RudderStack-spec calls translated into our own schema_version 1 events.

``decode`` hands a call here when its ``type`` is a Segment call type; what comes back
is either one of our events (then checked against our contracts like any other) or a
``Refusal``. The mapping table is in the README ("Segment / RudderStack events").

Identity stitching (README "Identity stitching"): a call with only an ``anonymousId`` is an
event of the anonymous profile ``anon:<anonymousId>``; a call with both ids is the user's event
carrying ``anonymous_id`` (the link it makes, split off at ingest); ``identify`` / ``alias``
become a link event of type ``identify`` (``schemas/segment_identity.py`` ``link_of``, the raw
``traits`` kept for ingest's trait policy).

Refused with their own reasons so nothing is lost silently: an ``identify`` with only an
``anonymousId`` (``anonymous_only``: no user to link to), an ``alias`` of an id to itself
(``no_link``), ``group`` (``unsupported_segment_event``), and any other track name or a
page/screen without a product (``unmapped_segment_event``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NamedTuple

import fastjsonschema

from schemas import segment_identity

__all__ = ["REASONS", "TYPES", "Refusal", "load_segment_schema", "mapped_track_names", "translate"]

_DIR: Final = Path(__file__).resolve().parent / "segment"

#: Segment call types; ``decode`` sends objects whose ``type`` is one of these here.
TYPES: Final[frozenset[str]] = frozenset({"track", "page", "screen", "identify", "alias", "group"})
_UNSUPPORTED_TYPES: Final = frozenset({"group"})
_LINK_TYPES: Final = frozenset({"identify", "alias"})
ANON_PREFIX: Final = segment_identity.ANON_PREFIX

REASONS: Final[tuple[str, ...]] = (
    "anonymous_only",
    "unsupported_segment_event",
    "unmapped_segment_event",
    "no_link",
)

DEFAULT_CURRENCY: Final = "USD"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


class Refusal(NamedTuple):
    """Why a Segment call was not translated: a reason code and a short explanation."""

    reason: str
    detail: str


Event = dict[str, Any]


def load_segment_schema(name: str) -> dict[str, Any]:
    """Load ``segment/<name>.schema.json``."""
    schema: dict[str, Any] = json.loads((_DIR / f"{name}.schema.json").read_text("utf-8"))
    return schema


def _base(kind: str, call: Event, ts: int) -> Event:
    event = {
        "event_id": call["messageId"],
        "type": kind,
        "schema_version": 1,
        "user_id": call["userId"],
        "ts": ts,
    }
    anon = call.get("anonymousId")
    if isinstance(anon, str) and anon and not call["userId"].startswith(ANON_PREFIX):
        event["anonymous_id"] = ANON_PREFIX + anon  # both ids: the call links them too
    return event


def _product_fields(event: Event, props: Event) -> None:
    """Optional product properties shared by views, cart adds and order items."""
    if "name" in props:
        event["title"] = props["name"]
    category = props.get("category")
    if category:
        event["category"] = [category]
    if "price" in props:
        event["price"] = props["price"]


def _click(call: Event, props: Event, ts: int) -> Event:
    event = _base("click", call, ts)
    event["product_id"] = props["product_id"]
    _product_fields(event, props)
    return event


def _page(call: Event, props: Event, ts: int) -> Event:
    # A page's properties.name is the page's name, not the product's title.
    event = _base("click", call, ts)
    event["product_id"] = props["product_id"]
    category = props.get("category")
    if category:
        event["category"] = [category]
    if "price" in props:
        event["price"] = props["price"]
    return event


def _add_to_cart(call: Event, props: Event, ts: int) -> Event:
    event = _base("add_to_cart", call, ts)
    event["product_id"] = props["product_id"]
    event["quantity"] = props.get("quantity", 1)
    _product_fields(event, props)
    return event


def _search(call: Event, props: Event, ts: int) -> Event:
    event = _base("search", call, ts)
    event["query"] = props["query"]
    return event


def _purchase(call: Event, props: Event, ts: int) -> Event:
    items = []
    for product in props["products"]:
        item: Event = {
            "product_id": product["product_id"],
            "quantity": product.get("quantity", 1),
        }
        _product_fields(item, product)
        items.append(item)
    amount = props.get("total")
    if amount is None:
        amount = props.get("revenue")
    if amount is None:
        amount = sum(i["price"] * i["quantity"] for i in items)
    event = _base("purchase", call, ts)
    event["order_id"] = props["order_id"]
    event["items"] = items
    event["amount"] = amount
    event["currency"] = props.get("currency", DEFAULT_CURRENCY).upper()
    return event


def _remove_from_cart(call: Event, props: Event, ts: int) -> Event:
    event = _base("remove_from_cart", call, ts)
    event["product_id"] = props["product_id"]
    event["quantity"] = props.get("quantity", 1)
    if "name" in props:
        event["title"] = props["name"]
    category = props.get("category")
    if category:
        event["category"] = [category]
    return event


def _refund(call: Event, props: Event, ts: int) -> Event:
    """Order Refunded: the listed products and total, else the whole order."""
    event = _base("refund", call, ts)
    event["order_id"] = props["order_id"]
    if props.get("products"):
        event["items"] = [
            {"product_id": p["product_id"], "quantity": p.get("quantity", 1)}
            for p in props["products"]
        ]
    amount = props.get("total")
    if amount is None:
        amount = props.get("revenue")
    if amount is not None:
        event["amount"] = amount
    if "reason" in props:
        event["reason"] = props["reason"]
    return event


def _cancel(call: Event, props: Event, ts: int) -> Event:
    """Order Cancelled: always the whole order (its products and total describe the order)."""
    event = _base("refund", call, ts)
    event["order_id"] = props["order_id"]
    event["cancelled"] = True
    if "reason" in props:
        event["reason"] = props["reason"]
    return event


def _review(call: Event, props: Event, ts: int) -> Event:
    event = _base("review", call, ts)
    event["product_id"] = props["product_id"]
    event["rating"] = props["rating"]
    event["text"] = props.get("review_body", "")
    if "name" in props:
        event["title"] = props["name"]
    return event


@dataclass(frozen=True, slots=True)
class _Shape:
    schema: str
    build: Callable[[Event, Event, int], Event]


_TRACK: Final[dict[str, _Shape]] = {
    "product viewed": _Shape("track_product", _click),
    "product clicked": _Shape("track_product", _click),
    "product added": _Shape("track_product", _add_to_cart),
    "products searched": _Shape("track_products_searched", _search),
    "order completed": _Shape("track_order_completed", _purchase),
    "product reviewed": _Shape("track_product_reviewed", _review),
    # Corrections (README "Corrections").
    "product removed": _Shape("track_product", _remove_from_cart),
    "order refunded": _Shape("track_order_refunded", _refund),
    "order cancelled": _Shape("track_order_refunded", _cancel),
}
_PAGE: Final = _Shape("page", _page)
_SCHEMA_NAMES: Final = sorted({s.schema for s in (*_TRACK.values(), _PAGE)})
_VALIDATORS: Final[dict[str, Callable[[Any], Any]]] = {
    name: fastjsonschema.compile(load_segment_schema(name)) for name in _SCHEMA_NAMES
}


def mapped_track_names() -> dict[str, str]:
    """Track event name (normalised) -> the schema it must satisfy; for docs and tests."""
    return {name: shape.schema for name, shape in _TRACK.items()}


def _event_time(call: Event) -> int | str:
    """Epoch ms of ``timestamp`` (else ``originalTimestamp``), or a detail saying why not."""
    value: Any = call.get("timestamp")
    if value is None:
        value = call.get("originalTimestamp")
    if type(value) is not str:
        return int(value)  # the schema admitted a number
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return f"timestamp {value[:64]!r} is not ISO-8601"
    if moment.tzinfo is None:
        # A wall-clock time without an offset would shift decay by the producer's zone.
        return f"timestamp {value!r} has no UTC offset (add Z or +hh:mm)"
    return (moment - _EPOCH) // _MS


def _shape_of(call: Event, kind: str) -> _Shape | Refusal:
    if kind in _UNSUPPORTED_TYPES:
        return Refusal(
            "unsupported_segment_event",
            f"Segment {kind} calls are not supported (accounts are not modelled)",
        )
    if kind != "track":
        props = call.get("properties")
        if type(props) is dict and "product_id" in props:
            return _PAGE
        return Refusal("unmapped_segment_event", f"{kind} call without properties.product_id")
    name = call.get("event")
    if type(name) is not str:
        return Refusal("schema_violation", "Segment track call needs a string 'event' name")
    key = name.strip().lower().replace("_", " ")
    shape = _TRACK.get(key)
    if shape is not None:
        return shape
    return Refusal("unmapped_segment_event", f"track {name[:100]!r} has no mapping")


def link(call: Event) -> Event | Refusal:
    """The link event of an ``identify`` / ``alias`` call: type ``identify``, the user in
    ``user_id``, the anonymous profile in ``anonymous_id`` (absent for an ``identify`` with
    only a ``userId``: traits only), the raw ``traits`` (ingest keeps what its policy allows).

    >>> link({"type": "alias", "messageId": "m", "userId": "u", "previousId": "a",
    ...       "timestamp": 5})  # doctest: +NORMALIZE_WHITESPACE
    {'event_id': 'm', 'type': 'identify', 'schema_version': 1, 'user_id': 'u', 'ts': 5,
     'anonymous_id': 'anon:a'}
    """
    kind = call["type"]
    if kind == "identify" and not call.get("userId") and call.get("anonymousId"):
        return Refusal("anonymous_only", "identify call has only an anonymousId: no user to link")
    found = segment_identity.link_of(call)
    if isinstance(found, segment_identity.Refusal):
        only_user = kind == "identify" and not call.get("anonymousId") and call.get("userId")
        if found.reason != "no_link" or not only_user:
            return Refusal(found.reason, found.detail)
        ts = _event_time(call)  # an identify of a known user: its traits, no link
        if isinstance(ts, str):
            return Refusal("schema_violation", ts)
        user, anon_id = call["userId"], None
    else:
        user, anon_id, ts = found.user_id, found.anon_id, found.ts
    event: Event = {
        "event_id": str(call["messageId"]),
        "type": "identify",
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
    }
    if anon_id is not None:
        event["anonymous_id"] = anon_id
    if type(call.get("traits")) is dict and call["traits"]:
        event["traits"] = call["traits"]
    return event


def translate(call: Event) -> Event | Refusal:
    """Our event for one Segment call (``call["type"]`` in ``TYPES``), or why not.

    The result still has to pass our own contract check (text, event-time bounds).
    """
    kind = call["type"]
    if kind in _LINK_TYPES:
        return link(call)
    shape = _shape_of(call, kind)
    if isinstance(shape, Refusal):
        return shape
    user, anon = call.get("userId"), call.get("anonymousId")
    if isinstance(user, str) and user.startswith(ANON_PREFIX):
        return Refusal("schema_violation", f"userId must not start with {ANON_PREFIX!r}")
    if not user and isinstance(anon, str) and anon:
        # An anonymous visitor: checked with the anonymous id in the user's place (same
        # bounds), then the event of the anonymous profile.
        call = {**call, "userId": anon}
        try:
            _VALIDATORS[shape.schema](call)
        except fastjsonschema.JsonSchemaException as exc:
            return Refusal("schema_violation", f"Segment {shape.schema}: {exc}")
        call["userId"] = ANON_PREFIX + anon
        call.pop("anonymousId")
        ts = _event_time(call)
        if isinstance(ts, str):
            return Refusal("schema_violation", ts)
        return shape.build(call, call["properties"], ts)
    try:
        _VALIDATORS[shape.schema](call)
    except fastjsonschema.JsonSchemaException as exc:
        return Refusal("schema_violation", f"Segment {shape.schema}: {exc}")
    ts = _event_time(call)
    if isinstance(ts, str):
        return Refusal("schema_violation", ts)
    return shape.build(call, call["properties"], ts)
