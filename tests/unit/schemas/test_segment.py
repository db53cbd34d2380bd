"""Segment / RudderStack-spec calls: each mapping, timestamps, and the refused cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import segment
from schemas.validate import Limits, Rejected, decode

NOW_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
TS = "2024-05-01T10:00:00Z"
TS_MS = 1_714_557_600_000
EXAMPLES = sorted((Path(segment.__file__).parent / "examples" / "segment").glob("*.json"))


def _decode(call: Any) -> dict[str, Any] | Rejected:
    return decode(orjson.dumps(call), Limits(), NOW_MS)


def _track(event: str, props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    call = {"type": "track", "event": event, "messageId": "m-1", "userId": "u-1", "timestamp": TS}
    return {**call, "properties": props, **extra}


def _ok(call: Any) -> dict[str, Any]:
    result = _decode(call)
    assert isinstance(result, dict), result
    return result


def _refused(call: Any) -> Rejected:
    result = _decode(call)
    assert isinstance(result, Rejected), result
    assert 0 < len(result.detail) <= 300
    return result


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_segment_example_decodes_to_its_expected_event(path: Path) -> None:
    example = json.loads(path.read_text(encoding="utf-8"))
    assert _ok(example["raw"]) == example["expect"]


def test_examples_cover_every_mapping() -> None:
    raws = [json.loads(p.read_text(encoding="utf-8"))["raw"] for p in EXAMPLES]
    names = {r["event"].lower().replace("_", " ") for r in raws if r["type"] == "track"}
    assert names == set(segment.mapped_track_names())
    assert {r["type"] for r in raws} == {"track", "page", "screen"}


@pytest.mark.parametrize("name", ["Product Viewed", "Product Clicked", "product_viewed"])
def test_product_view_names_become_clicks(name: str) -> None:
    props = {"product_id": "p-1", "name": "Boot", "category": "Shoes", "price": 80.5, "sku": "s"}
    event = _ok(_track(name, props))
    assert event == {
        "event_id": "m-1",
        "type": "click",
        "schema_version": 1,
        "user_id": "u-1",
        "ts": TS_MS,
        "product_id": "p-1",
        "title": "Boot",
        "category": ["Shoes"],
        "price": 80.5,
    }


def test_product_added_becomes_add_to_cart_with_default_quantity() -> None:
    event = _ok(_track("Product Added", {"product_id": "p-1", "category": ""}))
    assert event["type"] == "add_to_cart"
    assert event["quantity"] == 1
    assert "category" not in event  # an empty Segment category is left out
    assert _ok(_track("Product Added", {"product_id": "p-1", "quantity": 4}))["quantity"] == 4


def test_products_searched_becomes_search() -> None:
    event = _ok(_track("Products Searched", {"query": "red shoes"}))
    assert (event["type"], event["query"]) == ("search", "red shoes")


def test_order_completed_becomes_purchase() -> None:
    props = {
        "order_id": "o-1",
        "total": 27.0,
        "revenue": 25.0,
        "currency": "gbp",
        "products": [
            {"product_id": "p-1", "price": 10.0, "quantity": 2, "name": "Mug"},
            {"product_id": "p-2", "price": 5.0},
        ],
    }
    event = _ok(_track("Order Completed", props))
    assert event["type"] == "purchase"
    assert event["order_id"] == "o-1"
    assert event["amount"] == 27.0
    assert event["currency"] == "GBP"
    assert event["items"] == [
        {"product_id": "p-1", "quantity": 2, "price": 10.0, "title": "Mug"},
        {"product_id": "p-2", "quantity": 1, "price": 5.0},
    ]


def test_order_amount_falls_back_to_revenue_then_items() -> None:
    products = [{"product_id": "p-1", "price": 2.5, "quantity": 3}]
    props = {"order_id": "o", "revenue": 9.0, "products": products}
    revenue = _ok(_track("Order Completed", props))
    assert (revenue["amount"], revenue["currency"]) == (9.0, "USD")
    summed = _ok(_track("Order Completed", {"order_id": "o", "products": products}))
    assert summed["amount"] == 7.5


def test_product_reviewed_becomes_review() -> None:
    event = _ok(_track("Product Reviewed", {"product_id": "p-1", "rating": 4.0}))
    assert event["type"] == "review"
    assert event["rating"] == 4 and type(event["rating"]) is int
    assert event["text"] == ""
    body = _ok(_track("Product Reviewed", {"product_id": "p", "rating": 2, "review_body": "meh"}))
    assert body["text"] == "meh"
    assert _refused(_track("Product Reviewed", {"product_id": "p", "rating": 6})).reason == (
        "schema_violation"
    )


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_and_screen_naming_a_product_are_views(kind: str) -> None:
    call = {"type": kind, "name": "Product Page", "messageId": "m-1", "userId": "u-1"}
    props = {"product_id": "p-9", "name": "Product Page", "price": 3}
    event = _ok({**call, "timestamp": TS, "properties": props})
    assert (event["type"], event["product_id"], event["price"]) == ("click", "p-9", 3)
    assert "title" not in event  # a page's name is not the product's title
    home = _refused({**call, "timestamp": TS, "properties": {"path": "/"}})
    assert home.reason == "unmapped_segment_event"
    assert _refused({**call, "timestamp": TS}).reason == "unmapped_segment_event"


# -- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T10:00:00Z", TS_MS),
        ("2024-05-01T10:00:00.123Z", TS_MS + 123),
        ("2024-05-01T12:00:00+02:00", TS_MS),
        ("2024-05-01T10:00:00.123456+00:00", TS_MS + 123),
        (TS_MS, TS_MS),
        (float(TS_MS), TS_MS),
    ],
)
def test_timestamps_iso8601_or_epoch_ms(value: Any, expected: int) -> None:
    event = _ok(_track("Product Viewed", {"product_id": "p"}, timestamp=value))
    assert event["ts"] == expected and type(event["ts"]) is int


def test_original_timestamp_used_when_timestamp_absent() -> None:
    call = _track("Product Viewed", {"product_id": "p"})
    del call["timestamp"]
    call["originalTimestamp"] = "2024-05-01T10:00:01Z"
    assert _ok(call)["ts"] == TS_MS + 1000
    del call["originalTimestamp"]
    assert _refused(call).reason == "schema_violation"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2024-05-01T10:00:00", "schema_violation"),  # no offset
        ("yesterday", "schema_violation"),
        ("", "schema_violation"),
        (True, "schema_violation"),
        (-5, "schema_violation"),
        (1_714_557_600, "event_time_too_old"),  # epoch seconds read as ms: 1970
        ("2025-06-01T00:00:00Z", "event_time_in_future"),
    ],
)
def test_bad_timestamps_are_refused(value: Any, reason: str) -> None:
    result = _refused(_track("Product Viewed", {"product_id": "p"}, timestamp=value))
    assert result.reason == reason, result.detail


# -- refused: not supported yet, unmapped, anonymous --------------------------------------------


def test_group_calls_are_unsupported() -> None:
    call = {"type": "group", "messageId": "m", "userId": "u", "groupId": "g", "timestamp": TS}
    result = _refused(call)
    assert result.reason == "unsupported_segment_event"
    assert "group" in result.detail


def test_identify_and_alias_become_links() -> None:
    call = {"type": "identify", "messageId": "m", "userId": "u", "anonymousId": "a"}
    call["timestamp"] = TS
    link = _ok({**call, "traits": {"plan": "pro"}})
    assert (link["type"], link["user_id"], link["anonymous_id"]) == ("identify", "u", "anon:a")
    assert link["traits"] == {"plan": "pro"} and link["event_id"] == "m"
    only_user = _ok({k: v for k, v in call.items() if k != "anonymousId"})
    assert only_user["user_id"] == "u" and "anonymous_id" not in only_user
    alias = {"type": "alias", "messageId": "m2", "userId": "u", "previousId": "a", "timestamp": TS}
    assert _ok(alias)["anonymous_id"] == "anon:a"
    assert _refused({**alias, "previousId": "u"}).reason == "no_link"
    assert _refused({**call, "userId": None}).reason == "anonymous_only"
    assert _refused({**call, "userId": "anon:x"}).reason == "schema_violation"
    assert _refused({**call, "timestamp": "2024-05-01T10:00:00"}).reason == "schema_violation"
    assert _refused({**call, "timestamp": 1}).reason == "event_time_too_old"
    assert _refused({**call, "anonymousId": "a\x01"}).reason == "invalid_text"


def test_corrections_map_to_refunds_and_cart_removals() -> None:
    lines = [{"product_id": "p", "quantity": 2, "price": 5.0}, {"product_id": "q"}]
    part = _ok(_track("Order Refunded", {"order_id": "o", "products": lines, "revenue": 7.0}))
    assert part["type"] == "refund" and part["amount"] == 7.0
    assert part["items"] == [{"product_id": "p", "quantity": 2}, {"product_id": "q", "quantity": 1}]
    assert "cancelled" not in part
    whole = _ok(_track("order_refunded", {"order_id": "o"}))
    assert "items" not in whole and "amount" not in whole  # the whole order
    cancel = _ok(_track("Order Cancelled", {"order_id": "o", "products": lines, "total": 12.0}))
    assert cancel["cancelled"] is True
    assert "items" not in cancel and "amount" not in cancel  # an order's own description
    removed = _ok(_track("Product Removed", {"product_id": "p", "quantity": 3, "category": ""}))
    assert (removed["type"], removed["quantity"], "category" in removed) == (
        "remove_from_cart", 3, False)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "props"),
    [
        ("Order Refunded", {}),
        ("Order Refunded", {"order_id": "o", "total": -1}),
        ("Order Refunded", {"order_id": "o", "products": [{"product_id": "p", "quantity": 0}]}),
        ("Order Cancelled", {"order_id": ""}),
        ("Product Removed", {"product_id": "p", "quantity": -1}),
    ],
)
def test_corrections_out_of_bounds_are_schema_violations(name: str, props: dict[str, Any]) -> None:
    assert _refused(_track(name, props)).reason == "schema_violation"


@pytest.mark.parametrize("name", ["Checkout Started", "Product List Viewed", "Signed Up", ""])
def test_other_track_names_are_unmapped_and_named(name: str) -> None:
    result = _refused(_track(name, {}))
    assert result.reason == "unmapped_segment_event"
    assert repr(name) in result.detail


def test_track_without_event_name() -> None:
    call = _track("x", {})
    del call["event"]
    assert _refused(call).reason == "schema_violation"
    assert _refused({**call, "event": 5}).reason == "schema_violation"


def test_anonymous_only_calls_are_the_anonymous_profiles_and_both_ids_link() -> None:
    anonymous = _track("Product Viewed", {"product_id": "p"}, anonymousId="a-1")
    del anonymous["userId"]
    for call in (anonymous, {**anonymous, "userId": None}, {**anonymous, "userId": ""}):
        event = _ok(call)
        assert event["user_id"] == "anon:a-1" and "anonymous_id" not in event
    assert _refused({**anonymous, "anonymousId": "a" * 129}).reason == "schema_violation"
    both = _ok({**anonymous, "userId": "u-7"})
    assert both["user_id"] == "u-7" and "anonymousId" not in both
    assert both["anonymous_id"] == "anon:a-1"
    assert _refused({**anonymous, "userId": "anon:u-7"}).reason == "schema_violation"
    neither = _track("Product Viewed", {"product_id": "p"})
    del neither["userId"]
    assert _refused(neither).reason == "schema_violation"


@pytest.mark.parametrize(
    "props",
    [
        {},
        {"product_id": ""},
        {"product_id": 5},
        {"product_id": "p", "price": -1},
        {"product_id": "p", "quantity": 0},
        {"product_id": "p", "name": 3},
    ],
)
def test_bad_product_properties_are_schema_violations(props: dict[str, Any]) -> None:
    result = _refused(_track("Product Added", props))
    assert result.reason == "schema_violation"
    assert result.detail.startswith("Segment track_product:")


def test_bad_order_properties_are_schema_violations() -> None:
    for props in (
        {"order_id": "o", "products": []},
        {"order_id": "o", "products": [{"product_id": "p"}]},  # no price
        {"order_id": "o", "products": [{"product_id": "p", "price": 1}], "currency": "euro"},
        {"products": [{"product_id": "p", "price": 1}]},
    ):
        assert _refused(_track("Order Completed", props)).reason == "schema_violation", props


def test_our_contract_still_applies_after_translation() -> None:
    result = _refused(_track("Products Searched", {"query": "a\x07b"}))
    assert result.reason == "invalid_text"
    assert result.detail.startswith("Segment track as search:")
    long_id = _refused(_track("Product Viewed", {"product_id": "p"}, messageId="m" * 129))
    assert long_id.reason == "schema_violation"


def test_hostile_type_values_do_not_crash() -> None:
    for value in ([], {}, 1, None, "TRACK"):
        result = _decode({"type": value, "event": "Product Viewed"})
        assert isinstance(result, Rejected) and result.reason == "unknown_event_type", value
    props: Any = ["not", "an", "object"]
    assert _refused(_track("Product Viewed", props)).reason == "schema_violation"
    assert _refused({"type": "page", "properties": props}).reason == "unmapped_segment_event"
