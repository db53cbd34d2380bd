"""Stored user vectors, for the re-embedding command (``profiles/embedding/reembed.py``).

Reads the ``e`` field (and what rebuilding needs) of every profile, and replaces or drops it
with a version check: a user a running worker wrote meanwhile keeps the worker's state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from profiles.core.profile import Profile
from profiles.redis import keys

# KEYS: profile. ARGV: version the vectors were computed from, blob ('' drops the field).
_SET_VECTORS = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], 'e')
else redis.call('HSET', KEYS[1], 'e', ARGV[2]) end
return 1
"""
_PREFIX = keys.profile("")[:-1]  # "rtp:p:{"


class RedisVectorStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def count(self) -> int:
        """Profiles stored (an estimate for the progress bar: one SCAN pass)."""
        return sum([1 async for _ in self.client.scan_iter(match=f"{_PREFIX}*", count=1000)])

    async def users(self, chunk: int = 500) -> AsyncIterator[list[str]]:
        """Every user with a stored profile, ``chunk`` at a time."""
        batch: list[str] = []
        async for key in self.client.scan_iter(match=f"{_PREFIX}*", count=chunk):
            name = key.decode() if isinstance(key, bytes) else str(key)
            batch.append(name[len(_PREFIX) : -1])
            if len(batch) >= chunk:
                yield batch
                batch = []
        if batch:
            yield batch

    async def set_vectors(self, updates: Sequence[tuple[Profile, bytes | None]]) -> set[str]:
        """Write (or drop, ``None``) each user's vectors if its version did not move; returns
        the users skipped because a worker wrote them meanwhile."""
        if not updates:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for profile, blob in updates:
            pipe.eval(_SET_VECTORS, 1, keys.profile(profile.user_id), profile.version, blob or b"")
        replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(reply, NoScriptError):
                raise reply
        return {p.user_id for (p, _), r in zip(updates, replies, strict=True) if r == 0}
