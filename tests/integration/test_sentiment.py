"""Review sentiment through the real worker: reviews in, the users' and products' sentiment
in Redis and the API, ``negative_review`` alerts out once; and the same batch applied twice
on a real Redis counts nothing twice (the per-product counters' Lua fences)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.redis import keys
from profiles.sentiment.feature import COUNTER
from schemas.validate import validate_output
from tests.integration.harness import Consumed, Names, Worker, produce, read_topic
from tests.integration.oracle import eventually
from tests.integration.test_churn_sweep import runtime

pytestmark = pytest.mark.integration
START = 1_767_225_600_000
BAD = "Awful. It broke after one day, the worst purchase ever. Very disappointed."
GOOD = "Excellent, works perfectly and arrived early. Love it!"
BAD_ZH = "质量太差了，用了两天就坏了，客服也不理人，很失望。"


def purchase(user: str, n: int, amount: float, currency: str = "USD") -> dict[str, Any]:
    return {
        "event_id": f"{user}-p{n}",
        "type": "purchase",
        "schema_version": 1,
        "user_id": user,
        "ts": START + n,
        "order_id": f"{user}-o{n}",
        "currency": currency,
        "amount": amount,
        "items": [{"product_id": "p1", "quantity": 1, "price": amount, "title": "Kettle"}],
    }


def review(user: str, n: int, pid: str, rating: int, text: str) -> dict[str, Any]:
    return {
        "event_id": f"{user}-r{n}",
        "type": "review",
        "schema_version": 1,
        "user_id": user,
        "ts": START + 60_000 + n,
        "product_id": pid,
        "rating": rating,
        "text": text,
    }


EVENTS = [
    purchase("vip", 1, 800.0),
    purchase("zh-vip", 1, 4000.0, "CNY"),
    purchase("casual", 1, 20.0),
    review("vip", 2, "p1", 5, BAD),  # five stars, negative text: alert and disagreement
    review("vip", 3, "p2", 5, GOOD),
    review("zh-vip", 2, "p1", 3, BAD_ZH),  # alert
    review("casual", 2, "p1", 1, BAD),  # not valuable: no alert
]


async def messages_in(brokers: str, topic: str) -> int:
    """Every message ever written to ``topic`` (the sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # fresh metadata, so every partition is known
        parts = consumer.partitions_for_topic(topic) or set()
        assert parts, f"no partitions of {topic}"
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return sum(ends.values())
    finally:
        await consumer.stop()


def alerts(got: list[Consumed]) -> list[dict[str, Any]]:
    return [orjson.loads(m.value) for m in got if m.value is not None]


async def sentiment_of(client: aioredis.Redis, user: str) -> dict[str, Any] | None:
    raw = await client.hget(keys.profile(user), "sn")
    return None if raw is None else dict(orjson.loads(raw))


async def test_reviews_through_the_worker(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    await produce(brokers, names.input, EVENTS, key=lambda e: e["user_id"].encode())

    async def scored() -> bool:
        states = [await sentiment_of(redis_client, u) for u in ("vip", "zh-vip", "casual")]
        return all(s is not None for s in states) and states[0]["reviews"] == 2  # type: ignore[index]

    await eventually(scored, timeout=120)
    vip = await sentiment_of(redis_client, "vip")
    assert vip is not None
    assert (vip["reviews"], vip["negative"], vip["positive"]) == (2, 1, 1)
    assert vip["high_stars_negative_text"] == 1
    got = await read_topic(brokers, names.sentiment, lambda g: len(alerts(g)) >= 2, timeout=60)
    sent = alerts(got)
    assert sorted(a["event_id"] for a in sent) == [
        "vip:vip-r2:negative_review",
        "zh-vip:zh-vip-r2:negative_review",
    ]
    for alert in sent:
        validate_output("negative_review", alert)
        assert alert["product_id"] == "p1" and alert["score"] <= -0.6
    assert {m.key for m in got} == {b"vip", b"zh-vip"}

    status, item = await worker.get("/items/p1/sentiment")
    assert status == 200, item
    assert item["negative_share"] == pytest.approx(1.0) and item["score"] < -0.6
    assert item["reviews"] == pytest.approx(3.0, rel=1e-3)  # three reviews within a minute
    assert (await worker.get("/items/unreviewed/sentiment"))[0] == 404
    status, profile = await worker.get("/users/vip")
    assert status == 200 and profile["sentiment"]["reviews"] == 2
    assert profile["sentiment"]["disagreement"]["high_stars_negative_text"] == 1

    # The same messages again (a producer retry): duplicates, nothing counted or sent twice.
    before = (await worker.stats())["duplicates"]
    await produce(brokers, names.input, EVENTS, key=lambda e: e["user_id"].encode())

    async def seen() -> bool:
        return (await worker.stats())["duplicates"] >= before + len(EVENTS)

    await eventually(seen, timeout=120)
    assert await sentiment_of(redis_client, "vip") == vip
    status, again = await worker.get("/items/p1/sentiment")
    assert status == 200 and again["reviews"] == pytest.approx(item["reviews"])
    assert await messages_in(brokers, names.sentiment) == 2  # the topic holds the two alone
    # No review text anywhere in Redis.
    async for key in redis_client.scan_iter(count=1000):
        kind = await redis_client.type(key)
        if kind == b"hash":
            blob = b"".join(v for kv in (await redis_client.hgetall(key)).items() for v in kv)
            assert b"Awful" not in blob and BAD_ZH.encode() not in blob, key


async def test_a_redelivered_batch_counts_nothing_twice_on_redis(redis_url: str) -> None:
    rt = runtime(redis_url)
    await rt.store.load_scripts()
    records = [Record(InputPartition("in", 0), i, e) for i, e in enumerate(EVENTS)]
    first = await rt.updater.process(records)
    assert len(first.changes("negative_review")) == 2
    client = rt.store.client
    counters = [keys.counter(COUNTER, p) for p in range(2)]
    snapshot = [await client.hgetall(k) for k in counters]
    assert any(f"@f:{records[0].source.key}".encode() in s for s in snapshot)
    users = [await sentiment_of(client, u) for u in ("vip", "zh-vip", "casual")]

    rt.updater.forget()  # a restarted worker: nothing cached, the same batch again
    again = await rt.updater.process(records)
    assert again.changes("negative_review") == [] and again.fenced == len(records)
    assert [await client.hgetall(k) for k in counters] == snapshot
    assert [await sentiment_of(client, u) for u in ("vip", "zh-vip", "casual")] == users
    await rt.store.close()
