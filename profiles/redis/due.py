"""Due indexes: sorted sets of users by the time a sweep should look at them again.

Shared by the churn and value sweeps (``profiles/redis/churn.py``, ``profiles/redis/value.py``).
Every call touches one key, so the same code runs on Redis Cluster.
"""

from __future__ import annotations

import redis.asyncio as aioredis


async def due(client: aioredis.Redis, key: str, until_ms: int, limit: int = 1000) -> list[str]:
    """Members of the due index ``key`` due by ``until_ms``, at most ``limit``."""
    found = await client.zrangebyscore(key, "-inf", until_ms, start=0, num=limit)
    return [u.decode() if isinstance(u, bytes) else str(u) for u in found]


async def queue_all(client: aioredis.Redis, members: str, key: str, chunk: int = 5000) -> None:
    """Every member of the set ``members`` due now in ``key`` (after a new fit).

    ``ZADD ... LT`` only lowers: users already due keep their time, and no cross-key command
    is needed (the two keys may live on different cluster slots)."""
    batch: dict[str, int] = {}
    async for member in client.sscan_iter(members):
        batch[member.decode()] = 0
        if len(batch) >= chunk:
            await client.zadd(key, batch, lt=True)
            batch = {}
    if batch:
        await client.zadd(key, batch, lt=True)
