"""The one place Redis clients are built, so TLS options apply to every connection.

The URL carries the address, database, user and password (``redis://user:password@host/db``)
and turns TLS on (``rediss://``); :class:`RedisTLS` adds what a URL cannot hold well: the CA
that signed the server's certificate and, where the server asks for one, the client's own
certificate and key (mutual TLS). Without a CA file the system's trust store is used.

The clients built here raise :class:`RedisOutage` (an :class:`~profiles.core.errors.Outage`,
still a ``redis.exceptions.ConnectionError``) for the errors a retry can cure: the server
unreachable, timing out, loading its AOF, out of memory, read-only during a failover, a cluster
slot moving. Every other Redis error (a bad script, a wrong type) stays what it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.client
import redis.client
import redis.exceptions as rex

from profiles.core.errors import Outage

#: Errors of the server or the network, not of the command.
TRANSIENT: tuple[type[Exception], ...] = (
    rex.ConnectionError,  # includes BusyLoadingError (AOF replay after a restart)
    rex.TimeoutError,
    rex.OutOfMemoryError,  # maxmemory reached: frees up when consumers catch up or keys expire
    rex.ReadOnlyError,  # a replica during failover
    rex.ClusterDownError,
    rex.TryAgainError,
    OSError,
)


class RedisOutage(Outage, rex.ConnectionError):
    """Redis is unreachable or not accepting writes for now."""

    dependency = "redis"


@contextmanager
def outages() -> Iterator[None]:
    """Turn a transient Redis error into :class:`RedisOutage` (the original as its cause)."""
    try:
        yield
    except RedisOutage:
        raise
    except TRANSIENT as exc:
        raise RedisOutage(f"{type(exc).__name__}: {exc}") from exc


class _Pipeline(redis.asyncio.client.Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        with outages():
            return await super().execute(raise_on_error)

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        # A pipeline under WATCH runs its commands at once (optimistic transactions).
        with outages():
            return await super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]


class OutageRedis(aioredis.Redis):
    """The asyncio client; transient errors raise :class:`RedisOutage`."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        with outages():
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> _Pipeline:
        return _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class _SyncPipeline(redis.client.Pipeline):
    def execute(self, raise_on_error: bool = True) -> list[Any]:
        with outages():
            return super().execute(raise_on_error)

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        with outages():
            return super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]


class OutageSyncRedis(redis.Redis):
    """The blocking client; transient errors raise :class:`RedisOutage`."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        with outages():
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> _SyncPipeline:
        return _SyncPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


@dataclass(frozen=True)
class RedisTLS:
    """CA and client certificate files for ``rediss://`` URLs; empty = not given."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def options(self, url: str) -> dict[str, Any]:
        """redis-py keyword arguments; none for a plain ``redis://`` URL."""
        if not url.startswith("rediss://"):
            return {}
        out: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
        if self.ca_file:
            out["ssl_ca_certs"] = self.ca_file
        if self.cert_file:
            out["ssl_certfile"] = self.cert_file
            out["ssl_keyfile"] = self.key_file or None
        return out


def sync_client(url: str, tls: RedisTLS | None = None, **kwargs: Any) -> redis.Redis:
    """A blocking client (vector tier, tools)."""
    return OutageSyncRedis.from_url(url, **(tls or RedisTLS()).options(url), **kwargs)


def async_client(url: str, tls: RedisTLS | None = None, **kwargs: Any) -> aioredis.Redis:
    """An asyncio client (the store, on the worker's event loop)."""
    client: aioredis.Redis = OutageRedis.from_url(url, **(tls or RedisTLS()).options(url), **kwargs)
    return client
