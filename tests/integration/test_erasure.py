"""A user_erasure request through the real worker: data gone, indexes cleaned, tombstone sent."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis

from profiles import keys
from profiles.ownership import owner
from tests.integration.harness import Consumed, Names, Worker, produce, read_topic
from tests.integration.oracle import eventually

pytestmark = pytest.mark.integration
START = 1_767_225_600_000


async def test_erasure_removes_the_user_everywhere(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    user = "erin"
    buy = {
        "event_id": "erin-1",
        "type": "purchase",
        "schema_version": 1,
        "user_id": user,
        "ts": START,
        "order_id": "o1",
        "currency": "CNY",
        "amount": 20.0,
        "items": [{"product_id": "p1", "quantity": 1, "price": 20.0, "title": "Green Tea"}],
    }
    await produce(brokers, names.input, [buy])
    await eventually(lambda: _exists(redis_client, keys.profile(user)))
    partition = owner(user, 4)
    assert await redis_client.sismember(keys.churn_customers(partition), user)
    assert await redis_client.zscore(keys.churn_due(partition), user) is not None

    erase = {
        "event_id": "erin-2",
        "type": "user_erasure",
        "schema_version": 1,
        "user_id": user,
        "ts": START + 1000,
        "requested_by": "privacy-desk",
        "reason": "GDPR art. 17",
    }
    await produce(brokers, names.input, [erase])

    async def gone() -> bool:
        return not await redis_client.exists(keys.profile(user))

    await eventually(gone)
    assert not await redis_client.sismember(keys.churn_customers(partition), user)
    assert await redis_client.zscore(keys.churn_due(partition), user) is None
    receipts = await redis_client.xrange(keys.ERASURE_RECEIPTS)
    receipt = orjson.loads(receipts[-1][1][b"r"])
    assert receipt["user_id"] == user and receipt["requested_by"] == "privacy-desk"
    # Only the fence marker is left (no profile data), so redelivery cannot resurrect data.
    left = [k async for k in redis_client.scan_iter(match=f"*{user}*")]
    assert left == [keys.erased(user).encode()]
    marker = await redis_client.hgetall(keys.erased(user))
    assert set(marker) == {b"v", b"f", b"r"}

    def tombstone(got: list[Consumed]) -> bool:
        return any(m.key == user.encode() and m.value is None for m in got)

    await read_topic(brokers, names.profiles, tombstone, timeout=30)
    assert (await worker.get(f"/users/{user}"))[0] == 404


async def _exists(client: aioredis.Redis, key: str) -> bool:
    return bool(await client.exists(key))
