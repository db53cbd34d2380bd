"""Redis as the shared second tier of the embedding cache (synchronous: it runs in
the encoder's worker thread, never on the event loop)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from profiles.redis import keys
from profiles.redis.client import RedisTLS, sync_client


class RedisVectorTier:
    """``VectorTier`` over Redis strings: one MGET per lookup, one pipeline per store."""

    def __init__(self, url: str, ttl_s: int = 30 * 86_400, tls: RedisTLS | None = None) -> None:
        self.client = sync_client(url, tls)
        self.ttl_s = ttl_s

    def mget(self, names: Sequence[str]) -> list[bytes | None]:
        if not names:
            return []
        replies = self.client.mget([keys.PREFIX + n for n in names])
        return cast(list[bytes | None], replies)

    def mset(self, items: Mapping[str, bytes]) -> None:
        # Expiring keys: a vector nobody asked for in a month is not worth memory.
        pipe = self.client.pipeline(transaction=False)
        for name, blob in items.items():
            pipe.set(keys.PREFIX + name, blob, ex=self.ttl_s)
        pipe.execute()

    def close(self) -> None:
        self.client.close()
