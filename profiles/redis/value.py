"""The value feature's Redis: the fits (``rtp:value:params``, next to the churn model's) and
the due index of the tier sweep.

The fits are written by the worker that holds the churn refit lock and read by every worker at
each sweep. The batch path writes the due index through the profile store's commit; the sweep
(``profiles/value/sweeper.py``) reads and writes it here. Every call touches one key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from profiles.core.profile import Profile
from profiles.redis import due, keys
from profiles.value.population import ValueFit

# KEYS: profile. ARGV: version the value state was computed from, value JSON.
_WRITE_VALUE = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'cv', ARGV[2])
return 1
"""
_WRITE_VALUE_SHA = hashlib.sha1(_WRITE_VALUE.encode()).hexdigest()


class RedisValueStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def load_fit(self) -> ValueFit | None:
        raw = await self.client.get(keys.VALUE_PARAMS)
        return None if raw is None else ValueFit.from_dict(orjson.loads(raw))

    async def save_fit(self, fit: ValueFit) -> None:
        await self.client.set(keys.VALUE_PARAMS, orjson.dumps(fit.to_dict()))

    async def load_scripts(self) -> None:
        await self.client.script_load(_WRITE_VALUE)

    async def due(self, partition: int, until_ms: int, limit: int = 1000) -> list[str]:
        """Customers of ``partition`` whose tier may have changed by ``until_ms``."""
        return await due.due(self.client, keys.value_due(partition), until_ms, limit)

    async def forget_due(self, partition: int, user_ids: Sequence[str]) -> None:
        await self.client.zrem(keys.value_due(partition), *user_ids)

    async def save_values(self, updates: Sequence[tuple[Profile, int]]) -> set[str]:
        """Store swept value states (if the profile did not change meanwhile) and their next
        checks, in one pipeline; returns the users skipped because their version moved."""
        pipe = self.client.pipeline(transaction=False)
        for profile, _ in updates:
            state = profile.parts.get("value")
            pipe.evalsha(
                _WRITE_VALUE_SHA,
                1,
                keys.profile(profile.user_id),
                profile.version,
                orjson.dumps(state),
            )
        for profile, partition in updates:
            next_ms = (profile.parts.get("value") or {}).get("next_check_ms")
            if next_ms is None:
                pipe.zrem(keys.value_due(partition), profile.user_id)
            else:
                pipe.zadd(keys.value_due(partition), {profile.user_id: int(next_ms)})
        replies = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, NoScriptError) for r in replies):
            await self.load_scripts()
            return await self.save_values(updates)
        return {p.user_id for (p, _), r in zip(updates, replies, strict=False) if r == 0}

    async def requeue_customers(self, partitions: Sequence[int], chunk: int = 5000) -> None:
        """Every customer of ``partitions`` (the churn feature's customer index) due now.

        ``ZADD ... LT`` only lowers, and each call touches one key (cluster-safe)."""
        for partition in partitions:
            await due.queue_all(
                self.client, keys.churn_customers(partition), keys.value_due(partition), chunk
            )
