"""One broker and one Redis for the whole test session, started by the project's own tooling."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from stream.dev import LocalServices, free_port
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


@pytest.fixture
def worker_env(services: LocalServices, names: Names) -> dict[str, str]:
    return {"RTP_BROKER": services.broker_url, "RTP_REDIS_URL": services.redis_url, **names.env()}


@pytest.fixture
async def redis_client(services: LocalServices) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(services.redis_url)
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
