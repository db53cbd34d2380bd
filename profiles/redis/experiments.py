"""The per-arm experiment counters, read from every owner partition's shared counter
(``rtp:xp:{<partition>}``, written by the experiment feature's fenced ``CountsAdd``)."""

from __future__ import annotations

import redis.asyncio as aioredis

from profiles.experiments.feature import COUNTER, NO_DECAY_MS
from profiles.recommend.popularity import PartitionCounts, merge_partitions
from profiles.redis import keys


async def experiment_totals(client: aioredis.Redis, partitions: int) -> dict[str, float]:
    """Every ``<experiment>/<arm>/<count>`` field summed over the owner partitions."""
    pipe = client.pipeline(transaction=False)
    for partition in range(partitions):
        pipe.hgetall(keys.counter(COUNTER, partition))
    parts = []
    for found in await pipe.execute():
        fields = {_text(k): _text(v) for k, v in found.items()}
        if "@a" not in fields:
            continue
        counts = {k: float(v) for k, v in fields.items() if not k.startswith("@")}
        latest = fields.get("@t")
        parts.append(
            PartitionCounts(int(fields["@a"]), None if latest is None else int(latest), counts)
        )
    merged, _, _ = merge_partitions(parts, NO_DECAY_MS)
    return merged


def _text(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x
