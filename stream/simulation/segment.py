"""Generator events rendered as Segment-spec calls: the inverse of ``schemas.segment``.

``render`` looks an event's kind up in :data:`RENDERERS` (kind -> function of the event); a kind
with no entry (catalog ``product`` events, ``user_erasure``) has no Segment call and is sent as
our own event, which the input topic takes next to Segment calls. A new mapping (anonymous
sessions, once the worker stitches them) is one function and one line in the table.

What Segment's spec has no place for is dropped or flattened, and :func:`as_translated` says
exactly what, so a round trip ``translate(render(e)) == as_translated(e)`` is testable:
``session_id`` is dropped, a category path becomes its leaf (Segment's ``category`` is one
string, and ``translate`` reads it as one category: a joined ``"A > B > C"`` would become one
odd tag), a review's category is dropped, and a product view sent as a ``page`` call loses its
title.

>>> call = render({"event_id": "e1", "type": "search", "schema_version": 1, "user_id": "u1",
...                "ts": 0, "query": "tent"})
>>> call["type"], call["event"], call["messageId"], call["timestamp"], call["properties"]
('track', 'Products Searched', 'e1', '1970-01-01T00:00:00.000Z', {'query': 'tent'})
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

__all__ = ["PAGE_SHARE", "RENDERERS", "as_translated", "render", "render_all"]

Event = dict[str, Any]

#: One product view in this many is a ``page`` call rather than track "Product Viewed".
PAGE_SHARE: Final = 4
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def iso_timestamp(ts: int) -> str:
    """Epoch ms as ISO-8601 UTC with milliseconds, the form Segment libraries send.

    >>> iso_timestamp(1714557900250)
    '2024-05-01T10:05:00.250Z'
    """
    moment = _EPOCH + timedelta(milliseconds=ts)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_ANON: Final = "anon:"


def _call(kind: str, event: Event, properties: Event) -> Event:
    user: str = event["user_id"]
    # An anonymous visitor's event (stream/simulation/anonymous.py): only an anonymousId.
    who = {"anonymousId": user[len(_ANON) :]} if user.startswith(_ANON) else {"userId": user}
    return {
        "type": kind,
        "messageId": event["event_id"],
        **who,
        "timestamp": iso_timestamp(event["ts"]),
        "properties": properties,
    }


def _identify(event: Event) -> Event:
    """A login (``with_logins``): the identify linking the anonymous id to the user."""
    return {
        "type": "identify",
        "messageId": event["event_id"],
        "userId": event["user_id"],
        "anonymousId": event["anonymous_id"],
        "timestamp": iso_timestamp(event["ts"]),
    }


def _track(name: str, event: Event, properties: Event) -> Event:
    call = _call("track", event, properties)
    call["event"] = name
    return call


def _product_props(source: Event, *, title: bool = True) -> Event:
    props: Event = {"product_id": source["product_id"]}
    if title and "title" in source:
        props["name"] = source["title"]
    if source.get("category"):
        props["category"] = source["category"][-1]
    if "price" in source:
        props["price"] = source["price"]
    return props


def _is_page(event: Event) -> bool:
    # Stable per event, so a replay renders the same calls.
    return zlib.crc32(str(event["event_id"]).encode()) % PAGE_SHARE == 0


def _click(event: Event) -> Event:
    if _is_page(event):
        call = _call("page", event, _product_props(event, title=False))
        call["name"] = "Product"
        return call
    return _track("Product Viewed", event, _product_props(event))


def _add_to_cart(event: Event) -> Event:
    props = _product_props(event)
    props["quantity"] = event.get("quantity", 1)
    return _track("Product Added", event, props)


def _search(event: Event) -> Event:
    return _track("Products Searched", event, {"query": event["query"]})


def _purchase(event: Event) -> Event:
    products = []
    for item in event["items"]:
        product = _product_props(item)
        product["quantity"] = item.get("quantity", 1)
        products.append(product)
    props = {
        "order_id": event["order_id"],
        "total": event["amount"],
        "currency": event["currency"],
        "products": products,
    }
    return _track("Order Completed", event, props)


def _review(event: Event) -> Event:
    props: Event = {
        "product_id": event["product_id"],
        "rating": event["rating"],
        "review_body": event.get("text", ""),
    }
    if "title" in event:
        props["name"] = event["title"]
    return _track("Product Reviewed", event, props)


def _remove_from_cart(event: Event) -> Event:
    props = _product_props(event)
    props["quantity"] = event.get("quantity", 1)
    return _track("Product Removed", event, props)


def _refund(event: Event) -> Event:
    """A cancellation is Order Cancelled (always the whole order); a refund is Order
    Refunded with the refunded lines and amount, or neither for the whole order."""
    props: Event = {"order_id": event["order_id"]}
    if "reason" in event:
        props["reason"] = event["reason"]
    if event.get("cancelled"):
        return _track("Order Cancelled", event, props)
    if event.get("items"):
        props["products"] = [
            {"product_id": i["product_id"], "quantity": i["quantity"]} for i in event["items"]
        ]
    if "amount" in event:
        props["total"] = event["amount"]
    return _track("Order Refunded", event, props)


#: Our event kind -> its Segment call. Kinds missing here are sent as our own events.
RENDERERS: Final[dict[str, Callable[[Event], Event]]] = {
    "click": _click,
    "add_to_cart": _add_to_cart,
    "search": _search,
    "purchase": _purchase,
    "review": _review,
    "remove_from_cart": _remove_from_cart,
    "refund": _refund,
    "identify": _identify,
}


def render(event: Event) -> Event:
    """The Segment call for one of our events, or the event itself when its kind has none."""
    renderer = RENDERERS.get(event["type"])
    return event if renderer is None else renderer(event)


def render_all(events: Iterable[Event]) -> Iterator[Event]:
    """``render`` over a stream (for ``produce --format segment`` and the demo)."""
    for event in events:
        yield render(event)


def _flat(source: Event) -> None:
    if source.get("category"):
        source["category"] = [source["category"][-1]]


def as_translated(event: Event) -> Event:
    """``event`` as it comes back from ``schemas.segment.translate(render(event))``."""
    if event["type"] not in RENDERERS:
        return event
    if event["type"] == "identify":  # the link event of schemas.segment.link
        keep = ("event_id", "type", "schema_version", "user_id", "ts")
        return {**{k: event[k] for k in keep}, "anonymous_id": _ANON + event["anonymous_id"]}
    out = {k: v for k, v in event.items() if k != "session_id"}
    if out["type"] == "review":
        out.pop("category", None)
    elif out["type"] == "refund":
        if out.pop("cancelled", False):  # Order Cancelled names the whole order
            out = {k: v for k, v in out.items() if k not in ("items", "amount")}
            out["cancelled"] = True
    elif out["type"] == "purchase":
        out["items"] = [dict(item) for item in out["items"]]
        for item in out["items"]:
            _flat(item)
    else:
        _flat(out)
        if out["type"] == "click" and _is_page(event):
            out.pop("title", None)
    return out
