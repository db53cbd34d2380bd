"""The real worker between a real broker and a real Redis: exact state, outputs, dead letters."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis

from profiles.redis import keys
from schemas.validate import example_message, example_paths, validate_output
from stream.settings import Settings
from stream.simulation.generator import TrafficConfig, TrafficGenerator
from tests.integration.harness import Consumed, Names, Worker, produce, read_topic
from tests.integration.oracle import (
    eventually,
    produce_until_offline_profiles,
    stored_profiles,
    until_offline_profiles,
)

pytestmark = pytest.mark.integration

CONFIG = Settings.from_env({}).profile
START = 1_767_225_600_000  # 2026-01-01, event time of the hand-written events


def event(n: int, kind: str, user: str, ts: int, **fields: object) -> dict[str, object]:
    return {
        "event_id": f"{user}-{n}",
        "type": kind,
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
        **fields,
    }


def traffic(seed: int = 3, users: int = 40, days: float = 4.0) -> list[dict[str, object]]:
    gen = TrafficGenerator(TrafficConfig(seed=seed, users=users, products=150))
    return [*gen.catalog(), *gen.history(days)]


async def test_generated_traffic_gives_exactly_the_offline_profiles(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    events = traffic()
    users = await produce_until_offline_profiles(
        brokers, names.input, events, redis_client, CONFIG, timeout=90
    )

    # Downstream: the latest profile_updated of every user names its stored version.
    versions = {u: int(await redis_client.hget(keys.profile(u), "v")) for u in users}

    def complete(got: list[Consumed]) -> bool:
        seen = {m.key.decode(): orjson.loads(m.value)["version"] for m in got if m.key and m.value}
        return all(seen.get(u) == v for u, v in versions.items())

    out = await read_topic(brokers, names.profiles, complete)
    for message in out[:50]:
        assert message.value is not None and message.key is not None
        payload = orjson.loads(message.value)
        validate_output("profile_updated", payload)
        assert message.key.decode() == payload["user_id"]
        assert payload["event_id"] == f"{payload['user_id']}:{payload['version']}"


async def test_unkeyed_events_are_routed_and_counted_exactly(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    day = 86_400_000
    buy = {
        "order_id": "o1",
        "currency": "CNY",
        "amount": 59.8,
        "items": [
            {
                "product_id": "p1",
                "quantity": 2,
                "price": 29.9,
                "title": "无线蓝牙耳机 降噪",
                "category": ["电子产品", "耳机"],
            }
        ],
    }
    events = [
        event(
            1,
            "click",
            "ann",
            START,
            product_id="p1",
            title="无线蓝牙耳机 降噪",
            category=["电子产品", "耳机"],
        ),
        event(2, "search", "ann", START + 1000, query="wireless headphones"),
        event(3, "purchase", "ann", START + day, **buy),
        event(
            4,
            "review",
            "ann",
            START + 2 * day,
            product_id="p1",
            rating=5,
            text="音质很好 great sound",
        ),
        event(
            5,
            "add_to_cart",
            "bob",
            START,
            product_id="p2",
            quantity=1,
            title="Espresso Coffee Machine",
            category=["Home", "Kitchen", "Coffee"],
        ),
    ] * 2  # every event twice at new offsets: same event id, applied once
    await produce(brokers, names.input, events)  # unkeyed: any partition

    async def both() -> bool:
        got = await stored_profiles(redis_client, ["ann", "bob"])
        return all(got.values())

    await eventually(both)
    await eventually(lambda: _count(redis_client, "ann", 4))
    ann = orjson.loads(await redis_client.hget(keys.profile("ann"), "d"))
    assert ann["counts"] == {"click": 1, "search": 1, "purchase": 1, "review": 1}
    assert ann["spend_cents"] == {"CNY": 5980}
    assert (ann["orders"], ann["items_bought"]) == (1, 2)
    assert (ann["first_ts"], ann["last_ts"], ann["last_purchase_ts"]) == (
        START,
        START + 2 * day,
        START + day,
    )
    assert {"耳机", "headphones", "wireless"} <= set(ann["tags"])
    bob = orjson.loads(await redis_client.hget(keys.profile("bob"), "d"))
    assert bob["counts"] == {"add_to_cart": 1}
    assert {"espresso", "coffee"} <= set(bob["tags"])

    # The second copies sit at later offsets, maybe on another partition: wait for
    # them to be fenced, then check the first copies' effect did not change.
    async def fenced() -> bool:
        return bool((await worker.stats())["duplicates"] >= 5)

    await eventually(fenced)
    stats = await worker.stats()
    assert stats["duplicates"] == 5
    assert (
        orjson.loads(await redis_client.hget(keys.profile("ann"), "d"))["counts"] == ann["counts"]
    )


async def _count(client: aioredis.Redis, user: str, total: int) -> bool:
    blob = await client.hget(keys.profile(user), "d")
    return blob is not None and sum(orjson.loads(blob)["counts"].values()) == total


async def test_bad_input_is_dead_lettered_with_reason_and_good_events_still_apply(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    bad = [example_message(p) for p in example_paths(valid=False)]
    # The far-future and ancient examples depend on the clock, as in production.
    bad = [(raw, reason) for raw, reason in bad if reason]
    good = [event(i, "search", "carol", START + i, query=f"query {i}") for i in range(20)]
    mixed: list[bytes] = []
    for i, g in enumerate(good):
        mixed.append(orjson.dumps(g))
        if i < len(bad):
            mixed.append(bad[i][0])
    mixed += [raw for raw, _ in bad[len(good) :]]
    await produce(brokers, names.input, mixed)

    dead = await read_topic(brokers, names.dlq, lambda got: len(got) >= len(bad))
    assert sorted(m.headers["dlq.reason"] for m in dead) == sorted(r for _, r in bad)
    by_value = {m.value or b"": m for m in dead}
    limit = Settings.from_env({}).ingest.max_message_bytes
    for raw, reason in bad:
        msg = by_value[raw[:limit]]  # a dead letter keeps a bounded prefix of its value
        if len(raw) > limit:
            assert int(msg.headers["dlq.value_bytes"]) == len(raw)
            assert msg.headers["dlq.truncated"] == "value"
        assert msg.headers["dlq.reason"] == reason
        assert msg.headers["dlq.topic"] == names.input
        assert msg.headers["dlq.stage"] == "ingest"
        assert int(msg.headers["dlq.offset"]) >= 0 and msg.headers["dlq.detail"]
    await eventually(lambda: _count(redis_client, "carol", 20))
    assert (await worker.get("/health"))[0] == 200
    stats = await worker.stats()
    assert sum(stats["dead"].values()) == len(bad)


async def test_redelivery_of_the_same_offsets_changes_nothing(
    worker: Worker,
    worker_env: dict[str, str],
    brokers: str,
    names: Names,
    redis_client: aioredis.Redis,
    tmp_path: object,
) -> None:
    events = traffic(seed=5, users=15, days=2.0)
    users = await produce_until_offline_profiles(
        brokers, names.input, events, redis_client, CONFIG, timeout=90
    )
    before = await stored_profiles(redis_client, users)
    versions = [await redis_client.hget(keys.profile(u), "v") for u in users]
    worker.stop()

    # A new consumer group reads the very same input offsets again.
    again_env = {
        **worker_env,
        "RTP_APP_ID": f"again-{names.tag}",
        "RTP_ROUTED_TOPIC": f"routed-again-{names.tag}",
    }
    from pathlib import Path

    again = Worker(again_env, Path(str(tmp_path)) / "again.log").start()
    try:
        await again.wait_ready()

        async def all_fenced() -> bool:
            stats = await again.stats()
            return int(stats["fenced"]) + int(stats["items"]) >= len(events)

        await eventually(all_fenced, timeout=90)
        stats = await again.stats()
        assert stats["applied"] == 0 and stats["duplicates"] == 0
        assert await stored_profiles(redis_client, users) == before
        assert [await redis_client.hget(keys.profile(u), "v") for u in users] == versions
    finally:
        again.stop()


async def test_worker_killed_midstream_resumes_without_loss_or_double_apply(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    events = traffic(seed=9, users=60, days=6.0)
    half = len(events) // 2
    key = lambda e: str(e["user_id"]).encode()  # noqa: E731
    await produce(brokers, names.input, events[:half], key=key)

    async def some_applied() -> bool:
        return int((await worker.stats())["applied"]) > 0

    await eventually(some_applied)
    worker.kill()  # SIGKILL: no clean shutdown, offsets possibly behind Redis
    await produce(brokers, names.input, events[half:], key=key)
    worker.start()
    await worker.wait_ready(timeout=90)
    await until_offline_profiles(brokers, names.input, len(events), redis_client, CONFIG)
