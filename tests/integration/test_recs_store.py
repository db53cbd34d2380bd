"""The Redis side of recommendations on a real Redis: popularity script, catalog log, mirror."""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis.asyncio as aioredis

from profiles.pipeline.feature import CountsAdd
from profiles.pipeline.store import Commit
from profiles.recommend.index import ItemIndex
from profiles.recommend.mirror import ItemMirror
from profiles.recommend.popularity import NO_DECAY, Contribution, FencedCounts, count_field
from profiles.redis import keys
from profiles.redis.catalog import RedisCatalog
from profiles.redis.experiments import experiment_totals
from profiles.redis.store import RedisStore
from tests.unit.profiles.pipeline.test_updater import Words
from tests.unit.profiles.pipeline.test_updater_embeddings import HashEncoder, embedder

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "cluster"])
def redis_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """Each test twice: on one Redis, and on a 3-master, 3-replica Redis Cluster."""
    return redis_url if request.param == "redis" else str(request.getfixturevalue("cluster_url"))


H = 1000  # popularity half-life (ms): small, so a rebase (400 half-lives) happens in the test


def product(pid: str, ts: int, title: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"{pid}-{ts}",
        "type": "product",
        "schema_version": 1,
        "user_id": "catalog",
        "ts": ts,
        "product_id": pid,
        "title": title,
        "category": ["Shop", title.split()[-1]],
        "price": 1.0,
        "currency": "CNY",
        **extra,
    }


async def test_popularity_script_matches_the_python_fences(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client)
    await store.load_scripts()
    rng = random.Random(7)
    expected = FencedCounts(H)
    offsets = {"in:0": 0, "in:1": 0}
    sent: list[list[Contribution]] = []
    for step in range(40):
        batch: list[Contribution] = []
        for _ in range(rng.randint(1, 6)):
            source = rng.choice(list(offsets))
            offsets[source] += 1
            ts = step * 30 * H + rng.randint(-5 * H, 5 * H)  # out of order; > 400 h in all
            for pid in rng.sample(["a", "b", "c", "d"], rng.randint(1, 2)):  # lines of one event
                weight = rng.choice([1.0, 3.0, 5.0])
                batch.append((source, offsets[source], ts, count_field(pid), weight))
                segment = rng.choice([None, 0, 3])
                if segment is not None:  # the user's segment counts it too
                    batch.append((source, offsets[source], ts, count_field(pid, segment), weight))
        sent.append(batch)
    for i, batch in enumerate(sent):
        replay = sent[max(0, i - 2)]  # redelivery of an earlier batch: fenced everywhere
        for entries in (batch, replay):
            expected.add(entries)
            await store.commit(Commit(counts=[CountsAdd(3, entries, H)]))
    stored = (await RedisCatalog(redis_client).popularity(4))[3]
    assert stored.anchor == expected.state.anchor and stored.latest == expected.state.latest
    assert stored.counts.keys() == expected.state.counts.keys()
    assert {"p:a", "s0:a", "s3:a"} <= stored.counts.keys()  # and the rebases scaled them all
    for pid, value in expected.state.counts.items():
        assert stored.counts[pid] == pytest.approx(value, rel=1e-9)
    fences = await redis_client.hgetall(keys.popularity(3))
    assert {k: int(v) for k, v in fences.items() if k.startswith(b"@f:")} == {
        f"@f:{s}".encode(): o for s, o in offsets.items()
    }


async def test_no_decay_script_keeps_plain_fenced_sums(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client)
    await store.load_scripts()
    rng = random.Random(11)
    expected = FencedCounts(NO_DECAY)
    year = 365 * 86_400_000
    offsets = {"in:0": 0, "in:1": 0}
    sent: list[list[Contribution]] = []
    for _ in range(60):
        source = rng.choice(list(offsets))
        offsets[source] += 1
        ts = rng.randint(0, 300 * year)  # out of order, centuries apart: never rebased
        names = rng.sample(["x1/a/users", "x1/a/clicks", "x1/b/users"], rng.randint(1, 2))
        sent.append([(source, offsets[source], ts, n, float(rng.choice([1, 3]))) for n in names])
    for i, entries in enumerate(sent):
        for batch in (entries, sent[max(0, i - 2)]):  # with a redelivery: fenced
            expected.add(batch)
            await store.commit(Commit(counts=[CountsAdd(1, batch, NO_DECAY, "xp")]))
    raw = await redis_client.hgetall(keys.counter("xp", 1))
    stored = {k.decode(): v.decode() for k, v in raw.items()}
    sums = {k: v for k, v in stored.items() if not k.startswith("@")}
    assert sums == {k: str(int(v)) for k, v in expected.state.counts.items()}  # exact integers
    assert int(stored["@a"]) == expected.state.anchor == sent[0][0][2]  # first ts, kept
    assert int(stored["@t"]) == expected.state.latest
    assert {k: int(v) for k, v in stored.items() if k.startswith("@f:")} == {
        f"@f:{s}": o for s, o in offsets.items()
    }
    assert await experiment_totals(redis_client, 2) == expected.state.counts


async def test_experiment_counters_written_with_the_old_half_life_stay_readable(
    redis_client: aioredis.Redis,
) -> None:
    # Before NO_DECAY the counters used a 2**52 ms half-life; a key of that time goes on
    # counting (plain sums added to its anchored values) and reads back whole when rounded.
    store = RedisStore(redis_client)
    await store.load_scripts()
    day = 86_400_000
    old = [("in:0", i, i * 30 * day, "x1/a/users", 1.0) for i in range(1, 11)]
    await store.commit(Commit(counts=[CountsAdd(0, old, 2**52, "xp")]))
    before = await experiment_totals(redis_client, 1)
    assert before["x1/a/users"] != 10 and round(before["x1/a/users"]) == 10  # drifted a little
    new = [("in:0", i, i * 30 * day, "x1/a/users", 1.0) for i in range(5, 16)]  # 5-10 again
    await store.commit(Commit(counts=[CountsAdd(0, new, NO_DECAY, "xp")]))
    totals = await experiment_totals(redis_client, 1)
    assert round(totals["x1/a/users"]) == 15
    assert totals["x1/a/users"] - before["x1/a/users"] == pytest.approx(5.0, abs=1e-9)


async def test_mirror_follows_upserts_title_changes_and_discontinued_items(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisStore(redis_client)
    await store.load_scripts()
    emb = embedder(HashEncoder())
    await store.commit(Commit(items=[product("tea", 1, "Green Tea"), product("pen", 1, "Ink Pen")]))
    mirror = ItemMirror(
        ItemIndex(16), RedisCatalog(redis_client), emb, Words(), partitions=4, popularity_every=1
    )
    assert await mirror.load() == 2
    assert mirror.index.ids() == ["pen", "tea"]
    before = mirror.index.get("tea")
    assert before is not None and before.tags == frozenset({"green", "tea"})

    await store.commit(
        Commit(
            items=[
                product("tea", 2, "Black Tea"),  # new title: new vector and tags
                product("pen", 2, "Ink Pen", discontinued=True),
                product("cup", 2, "Tea Cup"),
                product("tea", 0, "Stale Title"),  # older than what is stored: ignored
            ]
        )
    )
    assert await mirror.poll() == 3  # distinct ids read from the log
    assert mirror.index.ids() == ["cup", "tea"]
    after = mirror.index.get("tea")
    assert after is not None and after.tags == frozenset({"black", "tea"})
    assert float(after.vector @ before.vector) < 0.99
    assert await mirror.poll() == 0  # nothing new

    # Popularity written by commits is read back on the next poll.
    await store.commit(
        Commit(
            counts=[
                CountsAdd(0, [("in:0", 1, 5, "p:cup", 5.0), ("in:0", 1, 5, "s1:tea", 2.0)], H),
                CountsAdd(1, [("in:1", 1, 5, "p:tea", 1.0), ("in:1", 1, 5, "s1:cup", 1.0)], H),
            ]
        )
    )
    await mirror.poll()
    assert [pid for pid, _ in mirror.index.popular(5)] == ["cup", "tea"]
    assert mirror.index.segment_popular(1) == ["tea", "cup"]  # segment 1 likes tea better


async def test_a_mirror_behind_the_trimmed_log_reloads_everything(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisStore(redis_client)
    await store.load_scripts()
    emb = embedder(HashEncoder())
    await store.commit(Commit(items=[product("tea", 1, "Green Tea")]))
    mirror = ItemMirror(ItemIndex(16), RedisCatalog(redis_client), emb, Words(), partitions=1)
    await mirror.load()
    await store.commit(Commit(items=[product("cup", 2, "Tea Cup"), product("pot", 2, "Tea Pot")]))
    await redis_client.xtrim(keys.CATALOG_LOG, maxlen=1, approximate=False)
    await mirror.poll()
    assert mirror.index.ids() == ["cup", "pot", "tea"]


async def test_seen_items_yield_to_catalog_entries(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client)
    await store.load_scripts()
    seen = {**product("mug", 5, "Clay Mug"), "seen_in": "click"}
    await store.commit(Commit(seen_items=[seen]))
    catalog = RedisCatalog(redis_client)
    assert (await catalog.items(["mug"]))["mug"]["seen_in"] == "click"
    await store.commit(Commit(items=[product("mug", 1, "Handmade Clay Mug")]))  # older, wins
    assert (await catalog.items(["mug"]))["mug"]["title"] == "Handmade Clay Mug"
    await store.commit(Commit(seen_items=[{**seen, "ts": 9}]))  # catalogued now: ignored
    assert (await catalog.items(["mug"]))["mug"]["title"] == "Handmade Clay Mug"
    await store.commit(Commit(items=[product("mug", 0, "Older Mug")]))  # older than catalog: no
    assert (await catalog.items(["mug"]))["mug"]["title"] == "Handmade Clay Mug"
    assert await catalog.all_ids() == ["mug"]
