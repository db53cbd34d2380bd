"""Refunds, cancellations and cart removals through the real worker, in any arrival order."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis

from schemas.validate import validate_output
from stream.settings import Settings
from stream.simulation.generator import TrafficConfig, TrafficGenerator
from tests.integration.harness import Consumed, Names, Worker, read_topic
from tests.integration.oracle import produce_until_offline_profiles, stored_profiles
from tests.integration.test_ops import scrape

pytestmark = pytest.mark.integration

CONFIG = Settings.from_env({}).profile
START = 1_767_225_600_000  # 2026-01-01
HOUR = 3_600_000


def ev(eid: str, kind: str, user: str, ts: int, **fields: object) -> dict[str, object]:
    return {"event_id": eid, "type": kind, "schema_version": 1, "user_id": user, "ts": ts,
            **fields}  # fmt: skip


def buy(eid: str, user: str, ts: int, order: str) -> dict[str, object]:
    items = [
        {"product_id": "p1", "quantity": 2, "price": 10.0, "category": ["Tea"]},
        {"product_id": "p2", "quantity": 1, "price": 30.0, "category": ["Home"]},
    ]  # fmt: skip
    return ev(eid, "purchase", user, ts, order_id=order, items=items, amount=50.0, currency="EUR")


async def test_refunds_in_any_order_give_exactly_the_offline_profiles(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    part = [{"product_id": "p1", "quantity": 1}]
    events = [
        # after: a partial refund, its redelivery (same id) and an overlapping one (new id)
        buy("a1", "ua", START, "oa"),
        ev("a2", "refund", "ua", START + HOUR, order_id="oa", items=part),
        ev("a2", "refund", "ua", START + HOUR, order_id="oa", items=part),
        ev("a3", "refund", "ua", START + 2 * HOUR, order_id="oa", items=part * 2),
        # before: the refund arrives first and waits for its purchase
        ev("b1", "refund", "ub", START + HOUR, order_id="ob"),
        buy("b2", "ub", START, "ob"),
        ev("b3", "click", "ub", START + 2 * HOUR, product_id="p3"),
        # a cancellation, then a cart add and its removal
        buy("c1", "uc", START, "oc"),
        ev("c2", "refund", "uc", START + 1, order_id="oc", cancelled=True, reason="changed mind"),
        ev("c3", "add_to_cart", "uc", START + 2, product_id="p1", quantity=1),
        ev("c4", "remove_from_cart", "uc", START + 3, product_id="p1", quantity=1),
        # a refund whose order never comes: given up past the lateness window, and counted
        ev("d1", "refund", "ud", START, order_id="od"),
        ev("d2", "click", "ud", START + CONFIG.lateness_ms + 1, product_id="p3"),
    ]
    users = await produce_until_offline_profiles(
        brokers, names.input, events, redis_client, CONFIG, timeout=120
    )

    stored = {
        u: orjson.loads(b or b"{}") for u, b in (await stored_profiles(redis_client, users)).items()
    }
    ua, ub, uc = stored["ua"], stored["ub"], stored["uc"]
    # ua: p1 refunded twice in all (the redelivery is a duplicate, the third clamped): 50 - 20.
    assert (ua["orders"], ua["items_bought"], ua["spend_cents"]) == (1, 1, {"EUR": 3000})
    assert ua["counts"]["refund"] == 2
    # ub: the early full refund was applied when its purchase came; nothing waits.
    assert (ub["orders"], ub["items_bought"], ub["spend_cents"], ub["pending"]) == (
        0, 0, {"EUR": 0}, {})  # fmt: skip
    assert (uc["orders"], uc["spend_cents"]) == (0, {"EUR": 0})
    assert uc["counts"]["remove_from_cart"] == 1
    assert stored["ud"]["pending"] == {} and stored["ud"]["counts"]["refund"] == 1
    metrics = await scrape(worker)
    assert metrics[("rtp_refunds_unmatched_total", ())] >= 1

    # Downstream: the profile_updated of each user (counts name the correction kinds too).
    def complete(got: list[Consumed]) -> bool:
        return {m.key for m in got} >= {u.encode() for u in users}

    for message in await read_topic(brokers, names.profiles, complete):
        assert message.value is not None
        validate_output("profile_updated", orjson.loads(message.value))


async def test_generated_refunds_and_removals_give_exactly_the_offline_profiles(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    gen = TrafficGenerator(TrafficConfig(seed=11, users=40, products=150, refund_p=0.4,
                                         removal_p=0.3))  # fmt: skip
    events = [*gen.catalog(), *gen.history(5.0)]
    kinds = {e["type"] for e in events}
    assert {"refund", "remove_from_cart", "purchase"} <= kinds
    users = await produce_until_offline_profiles(
        brokers, names.input, events, redis_client, CONFIG, timeout=180
    )
    refunded = [
        orjson.loads(b or b"{}") for b in (await stored_profiles(redis_client, users)).values()
    ]
    assert any(p["counts"].get("refund") for p in refunded)
    assert any(not e["open"] for p in refunded for e in p["ledger"].values())  # some reversed
