"""A product's decayed review sentiment, read from every owner partition's counter.

The counters (``rtp:sent:{<partition>}``) are written by the sentiment feature's batch-level
``CountsAdd``; this reads only one product's fields of each, so a lookup costs one round trip
however many products there are.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from profiles.recommend.popularity import PartitionCounts, merge_partitions
from profiles.redis import keys
from profiles.sentiment.feature import COUNTER
from profiles.sentiment.state import item_summary


async def item_sentiment(
    client: aioredis.Redis, product_id: str, partitions: int, half_life_ms: int
) -> dict[str, Any] | None:
    """``{"score", "reviews", "negative_share", "as_of"}`` of ``product_id`` (None: unreviewed)."""
    names = ["@a", "@t", f"s:{product_id}", f"n:{product_id}", f"x:{product_id}"]
    pipe = client.pipeline(transaction=False)
    for partition in range(partitions):
        pipe.hmget(keys.counter(COUNTER, partition), names)
    parts = []
    for anchor, latest, *values in await pipe.execute():
        if anchor is None:
            continue
        counts = {n: float(v) for n, v in zip(names[2:], values, strict=True) if v is not None}
        parts.append(PartitionCounts(int(anchor), None if latest is None else int(latest), counts))
    merged, _, as_of = merge_partitions(parts, half_life_ms)
    found = item_summary(merged, product_id)
    return None if found is None else {**found, "as_of": as_of}
