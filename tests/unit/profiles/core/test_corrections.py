"""Refunds, cancellations and cart removals reverse exactly what their events added."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from profiles.core import corrections
from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record, Tag, apply

SRC = InputPartition("site-events", 0)
DAY = 86_400_000
T0 = 1_700_000_000_000
CONFIG = ProfileConfig()


def tagger(event: dict[str, Any]) -> list[Tag]:
    if event["type"] == "purchase":
        pids = [item["product_id"] for item in event["items"]]
        return [(f"t:{pid}", 1.0 / len(pids)) for pid in pids]
    if "product_id" in event:
        return [(f"t:{event['product_id']}", 1.0)]
    return []


def purchase(order: str, ts: int, eid: str | None = None, **lines: int) -> dict[str, Any]:
    items = [{"product_id": p, "quantity": q, "price": 10.0} for p, q in lines.items()]
    amount = sum(10.0 * q for q in lines.values()) + 5.0  # 5.00 shipping
    return {"type": "purchase", "event_id": eid or f"b-{order}", "user_id": "u", "ts": ts,
            "order_id": order, "items": items, "amount": amount, "currency": "EUR"}  # fmt: skip


def refund(order: str, ts: int, eid: str, **extra: Any) -> dict[str, Any]:
    return {"type": "refund", "event_id": eid, "user_id": "u", "ts": ts, "order_id": order,
            **extra}  # fmt: skip


def click(pid: str, ts: int, eid: str) -> dict[str, Any]:
    return {"type": "click", "event_id": eid, "user_id": "u", "ts": ts, "product_id": pid}


def run(events: list[dict[str, Any]], profile: Profile | None = None) -> Profile:
    p = profile or Profile("u")
    start = max(p.fences.values(), default=-1) + 1
    apply(p, [Record(SRC, start + i, e) for i, e in enumerate(events)], CONFIG, tagger)
    return p


def scores(p: Profile) -> dict[str, float]:
    return dict(p.top_tags(100, CONFIG.half_life_ms, as_of=T0 + 10 * DAY))


def test_full_refund_leaves_the_profile_as_if_never_bought() -> None:
    base = [click("x", T0, "c1"), purchase("o1", T0 + DAY, a=1, b=2)]
    p = run([*base, refund("o1", T0 + 3 * DAY, "r1")])
    never = run([click("x", T0, "c1")])
    assert (p.orders, p.items_bought, p.spend_cents) == (0, 0, {"EUR": 0})
    assert (p.first_purchase_ts, p.last_purchase_ts) == (None, None)  # no customer any more
    assert scores(p) == pytest.approx(scores(never))
    assert set(scores(p)) == {"t:x"}  # the order's tags are gone, not left near zero
    assert p.counts["refund"] == 1 and p.ledger["o1"]["open"] is False


def test_cancellation_is_a_full_reversal_too() -> None:
    p = run([purchase("o1", T0, a=1), refund("o1", T0 + 1, "r1", cancelled=True)])
    assert (p.orders, p.items_bought, p.spend_cents["EUR"]) == (0, 0, 0)


def test_partial_refund_by_items_reverses_those_lines_only() -> None:
    p = run([purchase("o1", T0, a=1, b=2), refund("o1", T0 + DAY, "r1", items=[
        {"product_id": "b", "quantity": 1}])])  # fmt: skip
    assert p.orders == 1  # still an order: a line remains
    assert p.items_bought == 2
    assert p.spend_cents["EUR"] == 3500 - 1000  # the line's price x quantity
    bought = run([purchase("o1", T0, a=1, b=2)])
    # The order's evidence shrinks by the refunded share of its quantity (1 of 3), per tag.
    assert scores(p)["t:b"] == pytest.approx(scores(bought)["t:b"] * 2 / 3)


def test_duplicate_and_overlapping_refunds_never_over_reverse() -> None:
    line = [{"product_id": "b", "quantity": 2}]
    p = run([purchase("o1", T0, a=1, b=2), refund("o1", T0 + 1, "r1", items=line)])
    once = (p.items_bought, dict(p.spend_cents), scores(p))
    # Redelivery (same event id) is a duplicate; another id for the same items finds none left.
    p = run([refund("o1", T0 + 1, "r1", items=line), refund("o1", T0 + 2, "r2", items=line)], p)
    assert (p.items_bought, dict(p.spend_cents), scores(p)) == once
    # Then the rest, twice: the order ends fully reversed and counted out once.
    p = run([refund("o1", T0 + 3, "r3"), refund("o1", T0 + 4, "r4")], p)
    assert (p.orders, p.items_bought, p.spend_cents["EUR"]) == (0, 0, 0)


def test_refund_before_its_purchase_equals_after() -> None:
    buy = purchase("o1", T0, a=1, b=2)
    part = refund("o1", T0 + DAY, "r1", items=[{"product_id": "a", "quantity": 5}])
    after = run([click("x", T0 - 1, "c1"), buy, part])
    before = run([click("x", T0 - 1, "c1"), part, buy])
    assert before.pending == {} and after.pending == {}
    for p in (before, after):
        assert (p.orders, p.items_bought, p.spend_cents["EUR"]) == (1, 2, 2500)  # clamped to 1
    assert scores(before) == pytest.approx(scores(after))
    assert before.ledger == after.ledger


def test_amount_is_clamped_to_what_is_left_of_the_order() -> None:
    p = run([purchase("o1", T0, a=1), refund("o1", T0 + 1, "r1", amount=4.0)])
    assert (p.orders, p.items_bought, p.spend_cents["EUR"]) == (1, 1, 1100)  # money only
    p = run([refund("o1", T0 + 2, "r2", amount=999_999.0)], p)
    assert p.spend_cents["EUR"] == 0 and p.orders == 1  # never below zero; items were kept
    p = run([purchase("o2", T0 + 3, a=1), refund("o1", T0 + 4, "r3", amount=1.0)], p)
    assert p.spend_cents["EUR"] == 1500  # o1 had nothing left: o2 is untouched


def test_unknown_lines_and_orders_reverse_nothing() -> None:
    p = run([purchase("o1", T0, a=1), refund("o1", T0 + 1, "r1", items=[
        {"product_id": "zz", "quantity": 1}])])  # fmt: skip
    assert (p.items_bought, p.spend_cents["EUR"]) == (1, 1500)
    p = run([refund("nope", T0 + 2, "r2")], p)
    assert list(p.pending) == ["nope"] and p.spend_cents["EUR"] == 1500


def test_waiting_refunds_expire_with_the_lateness_window() -> None:
    p = run([refund("o1", T0, "r1")])
    assert list(p.pending) == ["o1"]
    p = run([click("x", T0 + CONFIG.lateness_ms, "c1")], p)
    assert list(p.pending) == ["o1"]  # at the bound: kept
    p = run([click("x", T0 + CONFIG.lateness_ms + 1, "c2")], p)
    assert p.pending == {}  # past it: its purchase would be too late itself


def test_ledger_and_pending_are_capped() -> None:
    buys = [purchase(f"o{i}", T0 + i, a=1) for i in range(corrections.MAX_ORDERS + 5)]
    p = run(buys)
    assert len(p.ledger) == corrections.MAX_ORDERS
    assert "o0" not in p.ledger and f"o{corrections.MAX_ORDERS + 4}" in p.ledger
    p = run([refund("o0", T0 + 100, "r0")], p)  # forgotten: waits (and will expire)
    assert p.orders == corrections.MAX_ORDERS + 5
    waits = [refund(f"w{i}", T0 + 200 + i, f"rw{i}") for i in range(corrections.MAX_PENDING + 3)]
    p = run(waits, p)
    assert sum(len(q) for q in p.pending.values()) == corrections.MAX_PENDING
    assert "o0" not in p.pending and "w0" not in p.pending  # the oldest go first


def test_ledger_survives_serialisation() -> None:
    p = run([purchase("o1", T0, a=1, b=2), refund("o2", T0, "r1")])
    back = Profile.from_bytes("u", p.version, p.to_bytes())
    assert back == p
    run([refund("o1", T0 + 1, "r2")], back)
    assert back.spend_cents["EUR"] == 0


def test_remove_from_cart_cancels_the_add() -> None:
    add = {"type": "add_to_cart", "event_id": "a1", "user_id": "u", "ts": T0,
           "product_id": "p", "quantity": 2}  # fmt: skip
    rm = {"type": "remove_from_cart", "event_id": "rm1", "user_id": "u", "ts": T0,
          "product_id": "p", "quantity": 2}  # fmt: skip
    p = run([click("x", T0, "c1"), add, rm])
    assert set(scores(p)) == {"t:x"}
    assert p.counts["remove_from_cart"] == 1
    # A removal of something never added takes nothing from other tags.
    p = run([{**rm, "event_id": "rm2", "product_id": "other"}], p)
    assert set(scores(p)) == {"t:x"}


def test_value_and_churn_read_the_corrected_history() -> None:
    from profiles.churn.features import Behaviour, customer_summary
    from profiles.value.population import measures

    bought = run([purchase("o1", T0, a=1), purchase("o2", T0 + DAY, b=3)])
    refunded = run(
        [refund("o2", T0 + 2 * DAY, "r1")], Profile.from_bytes("u", 0, bought.to_bytes())
    )
    as_of = T0 + 30 * DAY
    assert measures(bought, as_of) == (29.0, 2, 50.0)
    # One order left (15.00), and recency is that order's: the refunded one no longer counts.
    assert measures(refunded, as_of) == (30.0, 1, 15.0)
    before = Behaviour.read(orjson.loads(bought.to_bytes()))
    after = Behaviour.read(orjson.loads(refunded.to_bytes()))
    assert (before.orders, before.order_value) == (2, 25.0)
    assert (after.orders, after.order_value) == (1, 15.0)
    assert customer_summary(after, as_of) is not None
    assert customer_summary(after, as_of)[0] == 0  # no repeat purchase left
    assert run([refund("o1", T0 + 3 * DAY, "r2")], refunded).last_purchase_ts is None


def test_a_cart_removal_looks_up_its_product_in_the_catalog() -> None:
    from profiles.tags.event_tags import needs_catalog

    rm = {"type": "remove_from_cart", "product_id": "p", "quantity": 1}
    assert needs_catalog(rm) == ["p"]  # the worker loads it, as the add's tags had it
    assert needs_catalog({**rm, "title": "t", "category": ["c"]}) == []
    assert needs_catalog({"type": "refund", "order_id": "o"}) == []


def test_an_orders_evidence_keeps_its_strongest_tags() -> None:
    lines = {f"x{i:02d}": i + 1 for i in range(corrections.MAX_ORDER_TAGS + 10)}
    p = run([purchase("o1", T0, **lines)])
    kept = p.ledger["o1"]["ev"]
    assert len(kept) == corrections.MAX_ORDER_TAGS
    # Equal shares here (the test tagger ignores quantities): ties go by tag, deterministically.
    assert sorted(kept) == [f"t:x{i:02d}" for i in range(corrections.MAX_ORDER_TAGS)]


def test_a_merge_applies_a_refund_waiting_on_the_other_side() -> None:
    # The anonymous visitor bought; the refund came in under the user id before the merge.
    from profiles.core.stitch import merge

    anon = run([purchase("o1", T0, a=1)])
    user = run([click("x", T0 + DAY, "c1"), refund("o1", T0 + 2 * DAY, "r1")])
    assert "o1" in user.pending and anon.spend_cents["EUR"] == 1500
    assert merge(user, Profile(anon.user_id + "-anon", **_state(anon)), CONFIG)
    assert "o1" not in user.pending and user.ledger["o1"]["open"] is False
    assert (user.orders, user.items_bought, user.spend_cents["EUR"]) == (0, 0, 0)


def _state(p: Profile) -> dict[str, Any]:
    return dict(orjson.loads(p.to_bytes()))


def test_refunds_given_up_are_counted() -> None:
    def given_up(p: Profile, events: list[dict[str, Any]]) -> int:
        start = max(p.fences.values(), default=-1) + 1
        records = [Record(SRC, start + i, e) for i, e in enumerate(events)]
        return apply(p, records, CONFIG, tagger).unmatched_refunds

    p = Profile("u")
    assert given_up(p, [refund("o1", T0, "r1"), click("x", T0 + CONFIG.lateness_ms, "c1")]) == 0
    assert given_up(p, [click("x", T0 + CONFIG.lateness_ms + 1, "c2")]) == 1  # expired
    waits = [refund(f"w{i}", T0 + DAY + i, f"rw{i}") for i in range(corrections.MAX_PENDING + 3)]
    assert given_up(p, waits) == 3  # beyond the cap: the oldest three
    assert given_up(p, [purchase("w5", T0 + DAY + 50, a=1)]) == 0  # matched, not given up
