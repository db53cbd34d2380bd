"""The shared centroid store on a real Redis: concurrent merges lose nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
import redis.asyncio as aioredis

from profiles.redis.client import async_client
from profiles.redis.segments import LEGACY_KEYS, MODEL_KEY, STANDARDIZER_KEY, CentroidStore
from profiles.segments.features import Standardizer
from profiles.segments.kmeans import Delta, MiniBatchKMeans, Model
from stream.devtools.services import REDIS, LocalServices, free_port

pytestmark = pytest.mark.integration

DIM = 12
K = 4


@pytest.fixture(scope="module")
def segment_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of this module's own (no broker needed)."""
    services = LocalServices(
        tmp_path_factory.mktemp("segment-redis"), broker_port=free_port(), redis_port=free_port()
    )
    services.start(REDIS)
    try:
        yield services.redis_url
    finally:
        services.down()


@pytest.fixture(params=["redis", "cluster"])
def store_url(request: pytest.FixtureRequest, segment_redis: str) -> str:
    """The merges on one Redis, and on a 3-master, 3-replica Redis Cluster."""
    if request.param == "redis":
        return segment_redis
    return str(request.getfixturevalue("cluster_url"))


@pytest.fixture
async def client(store_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = async_client(store_url)
    await redis.flushdb()
    yield redis
    await redis.aclose()


def _groups(rng: np.random.Generator, n: int) -> np.ndarray:
    means = np.eye(K, DIM) * 20.0
    return means[rng.integers(K, size=n)] + rng.normal(0.0, 1.0, (n, DIM))


def _no_delta(km: MiniBatchKMeans) -> Delta:
    """What a worker has before the model is seeded: nothing assigned."""
    return km.delta(km.empty(), np.zeros((0, DIM)))


async def _seeded(store: CentroidStore, km: MiniBatchKMeans) -> Model:
    rng = np.random.default_rng(0)
    model = await store.merge(_no_delta(km), Standardizer(3), km, _groups(rng, 200))
    assert model.seeded
    return model


async def test_concurrent_merges_lose_nothing(store_url: str, client: aioredis.Redis) -> None:
    # dead_ratio 0: no centre is re-seeded, so every count stays where it was merged.
    km = MiniBatchKMeans(K, DIM, reservoir=200, seed_factor=10, dead_ratio=0.0)
    seeded = await _seeded(CentroidStore(client), km)
    start_counts = seeded.counts.sum()

    workers = [CentroidStore(async_client(store_url)) for _ in range(3)]
    merges_each = 40
    contributed = [0.0] * len(workers)
    std_rows = [0] * len(workers)
    offered = [0] * len(workers)

    async def worker(i: int) -> None:
        rng = np.random.default_rng(100 + i)
        store = workers[i]
        model = await store.refresh()
        for _ in range(merges_each):
            X = _groups(rng, int(rng.integers(1, 40)))
            w = rng.uniform(0.5, 2.0, len(X))
            std = Standardizer(3)
            std.learn_many(X[:, :3])
            # Deltas computed against a model that may be several versions old by now.
            delta = km.delta(model, X, w)
            model = await store.merge(delta, std, km, X[:5])
            offered[i] += len(X[:5])
            contributed[i] += float(w.sum())
            std_rows[i] += len(X)
            await asyncio.sleep(0)

    try:
        await asyncio.gather(*(worker(i) for i in range(len(workers))))
        conflicts = sum(w.conflicts for w in workers)
    finally:
        for w in workers:
            await w.client.aclose()

    final = await CentroidStore(client).load()
    assert final is not None
    assert final.total == pytest.approx(sum(contributed), rel=1e-12)
    assert final.counts.sum() == pytest.approx(start_counts + sum(contributed), rel=1e-12)
    # seeding 1 version, then 2 per merge (apply + reservoir)
    assert final.version == seeded.version + 2 * merges_each * len(workers)
    assert final.seen == 200 + sum(offered)
    stored_std = CentroidStore(client)
    await stored_std.load()
    assert stored_std.standardizer is not None
    assert stored_std.standardizer.n == sum(std_rows)
    assert conflicts > 0, "the test did not make the workers race"


async def test_a_restarted_worker_continues_from_redis(
    store_url: str, client: aioredis.Redis
) -> None:
    km = MiniBatchKMeans(K, DIM, reservoir=200, seed_factor=10)
    first = CentroidStore(client)
    with pytest.raises(LookupError):
        await first.refresh()
    assert await first.load() is None
    model = await _seeded(first, km)
    rng = np.random.default_rng(1)
    model = await first.merge(
        km.delta(model, _groups(rng, 50)), Standardizer(3), km, np.zeros((0, DIM))
    )

    # A new process: nothing in memory, everything from Redis.
    again = CentroidStore(async_client(store_url))
    try:
        loaded = await again.refresh()
        assert loaded.to_bytes() == model.to_bytes()
        assert loaded is await again.refresh()  # same version: not fetched again
        nothing = await again.merge(_no_delta(km), Standardizer(3), km, np.zeros((0, DIM)))
        assert nothing.version == model.version  # nothing to merge, nothing written
    finally:
        await again.client.aclose()
    raw = await client.hgetall(MODEL_KEY)
    assert int(raw[b"v"]) == model.version
    assert await client.exists(STANDARDIZER_KEY)


async def test_a_model_under_the_untagged_names_of_earlier_versions_is_adopted(
    segment_redis: str,
) -> None:
    """Only a single-node Redis can hold the untagged pair (a cluster refused its WATCH)."""
    km = MiniBatchKMeans(k=3, dim=DIM, seed=0)
    client = aioredis.Redis.from_url(segment_redis)
    await client.flushdb()
    writer = CentroidStore(client)
    model = await _seeded(writer, km)
    # As an earlier version left it: only the untagged pair.
    for new, old in LEGACY_KEYS.items():
        await client.rename(new, old)
    reader = CentroidStore(aioredis.Redis.from_url(segment_redis))
    try:
        loaded = await reader.load()
        assert loaded is not None and loaded.to_bytes() == model.to_bytes()
        assert reader.standardizer is not None
        # Copied, never overwritten: a newer model under the tagged names wins.
        newer = await writer.merge(
            km.delta(model, _groups(np.random.default_rng(2), 30)),
            Standardizer(3),
            km,
            np.zeros((0, DIM)),
        )
        assert (await reader.load()).to_bytes() == newer.to_bytes()  # type: ignore[union-attr]
    finally:
        await reader.client.aclose()
        await client.aclose()
