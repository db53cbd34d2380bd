"""One broker and one Redis for the whole test session, started by the project's own tooling."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

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
    client = aioredis.Redis.from_url(redis_url)
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
