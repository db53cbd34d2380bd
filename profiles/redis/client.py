"""The one place Redis clients are built, so TLS options apply to every connection.

The URL carries the address, database, user and password (``redis://user:password@host/db``)
and turns TLS on (``rediss://``); :class:`RedisTLS` adds what a URL cannot hold well: the CA
that signed the server's certificate and, where the server asks for one, the client's own
certificate and key (mutual TLS). Without a CA file the system's trust store is used.

A ``redis+cluster://`` (or ``rediss+cluster://``) URL names one node of a Redis Cluster: the
client then discovers the others, routes each command to the node owning its key's slot and
follows ``MOVED``/``ASK`` as slots move or a replica is promoted. Every multi-key script and
transaction of the project touches keys of one slot (hash tags: ``profiles/redis/keys.py``),
and pipelines are split per node by the cluster client, so the same code runs on both.

The clients built here raise :class:`RedisOutage` (an :class:`~profiles.core.errors.Outage`,
still a ``redis.exceptions.ConnectionError``) for the errors a retry can cure: the server
unreachable, timing out, loading its AOF, out of memory, read-only during a failover, a cluster
slot moving. Every other Redis error (a bad script, a wrong type) stays what it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio as aioredis
import redis.asyncio.client
import redis.asyncio.cluster
import redis.client
import redis.cluster
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
    except (RedisOutage, rex.AuthenticationError):
        # A wrong password is a ConnectionError to redis-py, but no retry cures it: the
        # operator must, and the error must say so instead of an endless "outage".
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


class _ClusterPipeline(redis.asyncio.cluster.ClusterPipeline):
    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        # redis-py blocks EVALSHA in cluster pipelines, as a script may name keys of several
        # slots. Ours name keys of one slot (the pipeline routes by them and refuses a mix
        # with CROSSSLOT), so it is queued like any keyed command.
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        with outages():
            return await super().execute(raise_on_error, allow_redirections)

    async def watch(self, *names: Any) -> None:  # type: ignore[override]
        with outages():
            await super().watch(*names)  # type: ignore[no-untyped-call]


class OutageRedisCluster(aioredis.RedisCluster):
    """The asyncio Redis Cluster client; transient errors raise :class:`RedisOutage`."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with outages():
            return await super().execute_command(*args, **kwargs)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> _ClusterPipeline:
        if shard_hint:
            raise rex.RedisClusterException("shard_hint is deprecated in cluster mode")
        return _ClusterPipeline(self, transaction)  # type: ignore[abstract]


class OutageSyncRedisCluster(redis.RedisCluster):
    """The blocking Redis Cluster client: MGET split per slot, transient errors of commands
    wrapped (its only pipeline user, the vector tier, treats every error as a miss)."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with outages():
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]

    def mget(self, keys: Any, *args: Any) -> list[Any]:
        # The vector tier's keys spread over every slot on purpose (no hash tag).
        return self.mget_nonatomic(keys, *args)


CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://`` or ``rediss+cluster://``)."""
    return url.startswith(CLUSTER_SCHEMES)


def node_url(url: str) -> str:
    """The plain redis-py URL of the node a cluster URL names (the scheme without ``+cluster``).

    >>> node_url("rediss+cluster://u:p@10.0.0.1:7000"), node_url("redis://h:1/0")
    ('rediss://u:p@10.0.0.1:7000', 'redis://h:1/0')
    """
    return url.replace("+cluster://", "://", 1) if is_cluster(url) else url


@dataclass(frozen=True)
class RedisTLS:
    """CA and client certificate files for ``rediss://`` URLs; empty = not given."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def options(self, url: str) -> dict[str, Any]:
        """redis-py keyword arguments; none for a plain ``redis://`` URL."""
        if not node_url(url).startswith("rediss://"):
            return {}
        out: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
        if self.ca_file:
            out["ssl_ca_certs"] = self.ca_file
        if self.cert_file:
            out["ssl_certfile"] = self.cert_file
            out["ssl_keyfile"] = self.key_file or None
        return out


def sync_client(url: str, tls: RedisTLS | None = None, **kwargs: Any) -> redis.Redis:
    """A blocking client (vector tier, tools); a cluster client for a cluster URL."""
    options = {**(tls or RedisTLS()).options(url), **kwargs}
    if is_cluster(url):
        # Typed as the single-node client: the cluster one offers the same commands.
        return cast(redis.Redis, OutageSyncRedisCluster.from_url(node_url(url), **options))
    return OutageSyncRedis.from_url(url, **options)


def async_client(url: str, tls: RedisTLS | None = None, **kwargs: Any) -> aioredis.Redis:
    """An asyncio client (the store, on the worker's event loop); a cluster client for a
    cluster URL."""
    options = {**(tls or RedisTLS()).options(url), **kwargs}
    if is_cluster(url):
        return cast(aioredis.Redis, OutageRedisCluster.from_url(node_url(url), **options))
    client: aioredis.Redis = OutageRedis.from_url(url, **options)
    return client
