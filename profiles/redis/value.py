"""The customer-value fits in Redis (``rtp:value:params``), next to the churn model's.

Written by the worker that holds the churn refit lock, read by every worker at each sweep.
"""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from profiles.redis import keys
from profiles.value.population import ValueFit


class RedisValueStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def load_fit(self) -> ValueFit | None:
        raw = await self.client.get(keys.VALUE_PARAMS)
        return None if raw is None else ValueFit.from_dict(orjson.loads(raw))

    async def save_fit(self, fit: ValueFit) -> None:
        await self.client.set(keys.VALUE_PARAMS, orjson.dumps(fit.to_dict()))
