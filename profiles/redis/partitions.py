"""Growing the owner partitions: the per-partition indexes re-bucketed to the new owners.

Each member of an index of owner partition ``p`` (``profiles/core/indexes.py:PER_PARTITION``)
whose owner under the new count is ``q != p`` is added to ``q``'s index (with its score, for a
sorted set) and then removed from ``p``'s; each command names one key, so the same code runs on
Redis Cluster. Adding before removing, and only ever to the member's own owner, makes the move
idempotent: an interrupted run is finished by running it again. Popularity (``rtp:pop:{p}``)
is not moved: readers sum every partition's counts and its fences are per input partition, so
the old counters stay valid beside the new ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis

from profiles.core.indexes import PER_PARTITION
from profiles.core.ownership import owner
from profiles.redis import keys


@dataclass
class Moved:
    """Members moved per index kind (its logical name without the partition)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, n: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n


async def rebucket(client: aioredis.Redis, old: int, new: int, chunk: int = 1000) -> Moved:
    """Move every per-partition index member of partitions ``0 .. old - 1`` to its owner
    among ``new`` partitions."""
    if new <= old:
        raise ValueError(f"owner partitions can only grow: {old} -> {new}")
    moved = Moved()
    for name_of, kind in PER_PARTITION:
        label = name_of(0).rsplit(":", 1)[0]
        for partition in range(old):
            source = keys.index(name_of(partition))
            batch: list[tuple[str, float | None]] = []
            if kind == "set":
                async for raw in client.sscan_iter(source, count=chunk):
                    batch.append((_text(raw), None))
            else:
                async for raw, score in client.zscan_iter(source, count=chunk):
                    batch.append((_text(raw), float(score)))
            leaving = [(m, s) for m, s in batch if owner(m, new) != partition]
            for start in range(0, len(leaving), chunk):
                part = leaving[start : start + chunk]
                adds = client.pipeline(transaction=False)  # every add lands before a remove
                for member, score in part:
                    target = keys.index(name_of(owner(member, new)))
                    if score is None:
                        adds.sadd(target, member)
                    else:
                        adds.zadd(target, {member: score})
                await adds.execute()
                members = [m for m, _ in part]
                if kind == "set":
                    await client.srem(source, *members)
                else:
                    await client.zrem(source, *members)
            moved.add(label, len(leaving))
    return moved


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
