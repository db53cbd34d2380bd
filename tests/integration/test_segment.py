"""Segment-spec calls and registry-framed values through the real worker, broker and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from profiles.redis import keys
from schemas.framing import frame
from tests.integration.harness import Names, Worker, produce, read_topic
from tests.integration.oracle import eventually

pytestmark = pytest.mark.integration

DAY = 86_400_000
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def track(n: int, event: str, props: dict[str, Any], user: str = "sam", **extra: Any) -> Any:
    call = {"type": "track", "event": event, "messageId": f"ajs-{user}-{n}", "userId": user}
    return {**call, "timestamp": iso(START + n * 60_000), "properties": props, **extra}


@pytest.fixture
async def framing_worker(worker_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Worker]:
    proc = Worker({**worker_env, "RTP_REGISTRY_FRAMING": "accept"}, tmp_path / "w.log").start()
    try:
        await proc.wait_ready()
        yield proc
    finally:
        proc.stop()


async def test_segment_calls_plain_and_framed_build_the_profile_and_refusals_are_dead_letters(
    framing_worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    viewed = track(1, "Product Viewed", {"product_id": "p1", "name": "Trail Running Shoes"})
    order = {
        "order_id": "o-9",
        "total": 150.5,
        "currency": "EUR",
        "products": [
            {"product_id": "p1", "price": 60.25, "quantity": 2, "name": "Trail Running Shoes"},
            {"product_id": "p2", "price": 30.0},
        ],
    }
    page = {"type": "page", "messageId": "pg-1", "userId": "sam", "timestamp": START + 10_000}
    good: list[bytes] = [
        orjson.dumps(viewed),
        frame(orjson.dumps(viewed), 11),  # the same messageId again, framed: applied once
        frame(orjson.dumps(track(2, "Product Added", {"product_id": "p1", "quantity": 2})), 12),
        orjson.dumps(track(3, "Products Searched", {"query": "waterproof trail shoes"})),
        frame(orjson.dumps(track(4, "Order Completed", order)), 13),
        orjson.dumps(track(5, "Product Reviewed", {"product_id": "p1", "rating": 4})),
        orjson.dumps({**page, "properties": {"product_id": "p3", "price": 9.0}}),
        # Corrections: p2 of the order refunded (its line's 30.00), a cart removal.
        frame(
            orjson.dumps(
                track(7, "Order Refunded", {"order_id": "o-9", "products": [{"product_id": "p2"}]})
            ),
            21,
        ),
        orjson.dumps(track(8, "Product Removed", {"product_id": "p1"})),
    ]
    anonymous = track(6, "Product Viewed", {"product_id": "p1"})
    del anonymous["userId"]
    anonymous["anonymousId"] = "anon-1"
    unsupported, unmapped = "unsupported_segment_event", "unmapped_segment_event"
    group = {"type": "group", "messageId": "g-1", "userId": "sam", "timestamp": START}
    # Only an anonymousId: an anonymous profile's event (anon:anon-1), but an identify with
    # only one has no user to link to.
    lost = {"type": "identify", "messageId": "i-1", "anonymousId": "a-2", "timestamp": START}
    home = {**page, "messageId": "pg-2", "properties": {"path": "/"}}
    refused: list[tuple[bytes, str, str | None]] = [
        (orjson.dumps(lost), "anonymous_only", None),
        (orjson.dumps(group), unsupported, None),
        (orjson.dumps(track(9, "Checkout Started", {})), unmapped, None),
        (frame(orjson.dumps(track(10, "Coupon Applied", {})), 22), unmapped, "22"),
        (orjson.dumps(home), unmapped, None),
        (frame(b"{not json", 23), "invalid_json", "23"),
        (b"\x00\x00\x01", "invalid_framing", None),
    ]
    good.append(orjson.dumps(anonymous))
    await produce(brokers, names.input, [*good, *(raw for raw, _, _ in refused)])

    async def complete() -> bool:
        blob = await redis_client.hget(keys.profile("sam"), "d")
        return blob is not None and sum(orjson.loads(blob)["counts"].values()) == 8

    await eventually(complete, timeout=90)
    sam = orjson.loads(await redis_client.hget(keys.profile("sam"), "d"))
    assert sam["counts"] == {
        "click": 2, "add_to_cart": 1, "search": 1, "purchase": 1, "review": 1, "refund": 1,
        "remove_from_cart": 1,
    }  # fmt: skip
    assert sam["spend_cents"] == {"EUR": 15050 - 3000}
    assert (sam["orders"], sam["items_bought"]) == (1, 2)
    assert (sam["first_ts"], sam["last_ts"]) == (START + 10_000, START + 8 * 60_000)
    assert sam["last_purchase_ts"] == START + 4 * 60_000
    assert {"trail", "waterproof"} <= set(sam["tags"])
    assert await redis_client.exists(keys.profile("anon-1")) == 0

    async def anonymous_profile() -> bool:
        return await redis_client.exists(keys.profile("anon:anon-1")) == 1

    await eventually(anonymous_profile, timeout=90)
    anon = orjson.loads(await redis_client.hget(keys.profile("anon:anon-1"), "d"))
    assert anon["counts"] == {"click": 1}

    dead = await read_topic(brokers, names.dlq, lambda got: len(got) >= len(refused))
    assert len(dead) == len(refused)
    by_value = {m.value or b"": m for m in dead}
    for raw, reason, schema_id in refused:
        msg = by_value[raw]  # the original bytes, framing included
        assert msg.headers["dlq.reason"] == reason, msg.headers
        assert msg.headers["dlq.stage"] == "ingest" and msg.headers["dlq.detail"]
        assert msg.headers.get("dlq.schema_id") == schema_id
    stats = await framing_worker.stats()
    assert stats["dead"] == {
        "anonymous_only": 1,
        "unsupported_segment_event": 1,
        "unmapped_segment_event": 3,
        "invalid_json": 1,
        "invalid_framing": 1,
    }
    assert stats["duplicates"] == 1
