"""One broker and one Redis for the whole test session, started by the project's own tooling,
and a 3-master, 3-replica Redis Cluster for the tests that ask for one (``cluster_url``)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from profiles.redis.client import async_client
from stream.devtools.cluster import LocalRedisCluster, free_base_port
from stream.devtools.services import LocalServices, free_port
from tests.integration.harness import Names, Worker


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    state = tmp_path_factory.mktemp("services")
    local = LocalServices(
        state,
        broker_port=free_port(),
        redis_port=free_port(),
        redis_args=("--appendfsync", "always"),
    )
    local.up()
    try:
        yield local
    finally:
        local.down()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """Started on first use; a silent master is failed over after 2 s (tests kill one)."""
    cluster = LocalRedisCluster(
        tmp_path_factory.mktemp("redis-cluster"), base_port=free_base_port(), node_timeout_ms=2000
    )
    cluster.up(timeout=120)
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def cluster_url(redis_cluster: LocalRedisCluster) -> str:
    """The cluster, emptied, with every node back and every slot served."""
    for port in redis_cluster.ports:
        if port not in redis_cluster.running():
            redis_cluster.start(port)
    redis_cluster.wait_ok(timeout=120)
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def brokers(services: LocalServices) -> str:
    return services.broker_url.removeprefix("kafka://")


@pytest.fixture
def names() -> Names:
    return Names()


_databases = itertools.count()


@pytest.fixture
def redis_url(services: LocalServices) -> Iterator[str]:
    """A Redis database of the test's own (1-15, flushed): tests reuse generated user ids."""
    url = services.redis_url.rsplit("/", 1)[0] + f"/{1 + next(_databases) % 15}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url


@pytest.fixture
def worker_env(services: LocalServices, names: Names, redis_url: str) -> dict[str, str]:
    return {"RTP_BROKER": services.broker_url, "RTP_REDIS_URL": redis_url, **names.env()}


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = async_client(redis_url)  # a cluster client for a cluster URL
    yield client
    await client.aclose()


@pytest.fixture
async def worker(worker_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Worker]:
    proc = Worker(worker_env, tmp_path / "worker.log").start()
    try:
        await proc.wait_ready()
        yield proc
    finally:
        proc.stop()
