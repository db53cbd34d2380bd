"""Re-embedding after a model change, on a real Redis: catalog, rebuilt and dropped users."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile
from profiles.embedding.reembed import reembed
from profiles.embedding.text import item_text
from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.updater import BatchUpdater
from profiles.redis import keys
from profiles.redis.catalog import RedisCatalog
from profiles.redis.store import RedisStore
from profiles.redis.vectors import RedisVectorStore
from tests.unit.profiles.pipeline.test_updater import Words
from tests.unit.profiles.pipeline.test_updater_embeddings import HashEncoder, embedder

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

DAY = 86_400_000
CATALOG = {"tea": ("Green Tea", ["Food", "Tea"]), "pen": ("Ink Pen", ["Office"])}


def event(n: int, kind: str, user: str) -> dict[str, Any]:
    return {"event_id": f"x{n}", "type": kind, "schema_version": 1, "user_id": user, "ts": DAY}


def product(n: int, pid: str) -> dict[str, Any]:
    title, category = CATALOG[pid]
    return {**event(n, "product", "catalog"), "product_id": pid, "title": title} | {
        "category": category
    }


def purchase(n: int, user: str, pid: str) -> dict[str, Any]:
    line = {"product_id": pid, "quantity": 1, "price": 3.0}
    return {**event(n, "purchase", user), "order_id": f"o{n}", "currency": "CNY"} | {
        "amount": 3.0,
        "items": [line],
    }


def click(n: int, user: str, pid: str) -> dict[str, Any]:
    return {**event(n, "click", user), "product_id": pid}


async def write(store: RedisStore, model: str, events: list[dict[str, Any]], at: int) -> None:
    features = builtin_features(partitions=1, embedder=embedder(HashEncoder(model)))
    up = BatchUpdater(store, ProfileConfig(), Words(), features, clock=lambda: 1.0)
    await up.process([Record(InputPartition("in", 0), at + i, e) for i, e in enumerate(events)])


async def test_a_model_change_rebuilds_buyers_drops_the_rest_and_repeats_as_a_no_op(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisStore(redis_client)
    await store.load_scripts()
    await write(store, "hash-a", [product(1, "tea"), product(2, "pen")], 0)
    await write(store, "hash-a", [purchase(3, "buyer", "tea"), click(4, "browser", "pen")], 2)
    await write(store, "hash-b", [click(5, "recent", "pen")], 4)  # already on the new model
    before = {u: await redis_client.hgetall(keys.profile(u)) for u in ("buyer", "browser")}

    new = embedder(HashEncoder("hash-b"))
    stages: list[tuple[str, int, int | None]] = []
    catalog, vectors = RedisCatalog(redis_client), RedisVectorStore(redis_client)

    dry = await reembed(new, catalog, store, vectors, Words(), 5.0, dry_run=True)
    assert (dry.rebuilt, dry.dropped, dry.current) == (1, 1, 1)
    assert await redis_client.hgetall(keys.profile("buyer")) == before["buyer"]

    def progress(stage: str, done: int, total: int | None) -> None:
        stages.append((stage, done, total))

    report = await reembed(new, catalog, store, vectors, Words(), 5.0, progress, chunk=1)
    assert (report.items, report.users) == (2, 3)
    assert (report.rebuilt, report.dropped, report.current, report.raced) == (1, 1, 1, 0)
    assert stages[-1] == ("users", 3, 3) and ("catalog", 2, 2) in stages

    config = EmbeddingConfig("hash-b", 16)
    blob = await redis_client.hget(keys.profile("buyer"), "e")
    rebuilt, changed = EmbeddingProfile.load(blob, config)
    tea = HashEncoder("hash-b").encode([item_text(*CATALOG["tea"])])[0]
    long_term = rebuilt.long_term()
    assert not changed and long_term is not None and float(long_term @ tea) > 0.9999
    assert rebuilt.interest_list() and rebuilt.long.total == 5.0
    # Only the vectors changed: behaviour and version as the worker left them.
    after = await redis_client.hgetall(keys.profile("buyer"))
    assert {k: v for k, v in after.items() if k != b"e"} == {
        k: v for k, v in before["buyer"].items() if k != b"e"
    }
    browser = await redis_client.hgetall(keys.profile("browser"))
    assert b"e" not in browser and browser[b"d"] == before["browser"][b"d"]
    assert orjson.loads(browser[b"d"])["counts"] == {"click": 1}

    again = await reembed(new, catalog, store, vectors, Words(), 5.0)
    assert (again.rebuilt, again.dropped, again.current) == (0, 0, 3)

    # A worker that wrote the user meanwhile wins: the write names the version it read.
    stale = Profile("buyer", version=int(after[b"v"]) - 1)
    assert await vectors.set_vectors([(stale, b"other")]) == {"buyer"}
    assert await redis_client.hget(keys.profile("buyer"), "e") == blob
    assert np.isfinite(long_term).all()


def test_the_command_reembeds_with_the_configured_model(
    redis_url: str, worker_env: dict[str, str]
) -> None:
    async def seed() -> None:
        client = aioredis.Redis.from_url(redis_url)
        store = RedisStore(client)
        await store.load_scripts()
        await write(store, "hash-a", [product(1, "tea"), purchase(2, "buyer", "tea")], 0)
        await client.aclose()

    asyncio.run(seed())
    env = {**os.environ, **worker_env}
    bad = subprocess.run(
        [sys.executable, "-m", "stream", "reembed", "--chunk", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "--chunk must be at least 1" in bad.stderr
    done = subprocess.run(
        [sys.executable, "-m", "stream", "reembed"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 profiles read" in done.stdout and "1 were rebuilt" in done.stdout, done.stdout

    async def stored() -> bytes | None:
        client = aioredis.Redis.from_url(redis_url)
        blob = await client.hget(keys.profile("buyer"), "e")
        await client.aclose()
        return blob

    blob = asyncio.run(stored())
    _, other_model = EmbeddingProfile.load(blob, EmbeddingConfig("hash-a", 16))
    assert blob is not None and other_model  # now under the shipped model's id
