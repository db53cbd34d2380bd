"""A conflicting attempt's index operations are undone on Redis, not only in memory."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from profiles.pipeline.updater import BatchUpdater
from profiles.redis import keys
from profiles.redis.store import RedisStore
from tests.unit.profiles.pipeline.test_updater import CFG, Leaning, Words, click, recs, search

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "cluster"])
def redis_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """On one Redis, and on a 3-master, 3-replica Redis Cluster (indexes live in other slots
    than the profile they follow)."""
    return redis_url if request.param == "redis" else str(request.getfixturevalue("cluster_url"))


async def test_the_retry_after_a_conflict_leaves_the_indexes_as_the_profile_says(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisStore(redis_client)
    await store.load_scripts()
    first, second = (BatchUpdater(store, CFG, Words(), [Leaning()]) for _ in range(2))
    await first.process(recs(click(0, "a")))
    # Another worker takes the user over, applies offsets 1-2 and ends a "clicker" again;
    # the old owner then applies offset 1 from its stale copy ("searcher") and conflicts.
    await second.process(recs(search(1, "a"), click(2, "a"), start=1))
    result = await first.process(recs(search(1, "a"), start=1))
    assert result.conflicts == 1 and result.fenced == 1
    assert await redis_client.smembers(keys.index("clicker")) == {b"a"}
    assert await redis_client.smembers(keys.index("searcher")) == set()
