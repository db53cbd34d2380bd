"""A merge on a real Redis: stored with its fence atomically, once, and read back whole."""

from __future__ import annotations

import copy
import random

import pytest
import redis.asyncio as aioredis

from profiles.core.profile import Profile, apply
from profiles.core.stitch import merge
from profiles.pipeline.store import Commit
from profiles.redis.store import RedisStore
from tests.unit.profiles.core.test_stitch import CONFIG, tagger, traffic

pytestmark = pytest.mark.integration


async def test_a_merge_is_stored_once_and_later_anon_events_apply_once(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisStore(redis_client)
    await store.load_scripts()
    anon_records, user_records = traffic(3)
    cut = len(anon_records) // 2
    anon = Profile(anon_records[0].event["user_id"])
    apply(anon, anon_records[:cut], CONFIG, tagger)
    user = Profile("u1")
    apply(user, user_records, CONFIG, tagger)
    user.version = 1
    assert not (await store.commit(Commit(profiles=[copy.deepcopy(user)]))).conflicts

    # Two deliveries of the merge race from the same base: the store takes one, refuses one.
    first, second = copy.deepcopy(user), copy.deepcopy(user)
    for p in (first, second):
        assert merge(p, anon, CONFIG)
        p.version = 2
    assert not (await store.commit(Commit(profiles=[first]))).conflicts
    assert (await store.commit(Commit(profiles=[second]))).conflicts == {"u1"}

    # The redelivery reloads, finds the merge fenced, and only the forwarded events apply.
    loaded, _ = await store.load(["u1"], [])
    stored = loaded["u1"]
    assert stored.merged == [anon.user_id] and stored.version == 2
    assert not merge(stored, anon, CONFIG)
    shuffled = anon_records[cut:] + random.Random(1).sample(anon_records, 10)
    out = apply(stored, shuffled, CONFIG, tagger)
    assert out.applied == len(anon_records) - cut
    stored.version = 3
    assert not (await store.commit(Commit(profiles=[stored]))).conflicts
    final = await store.get("u1")
    assert final is not None
    assert final.counts == {
        k: sum(1 for r in anon_records + user_records if r.event["type"] == k) for k in final.counts
    }
    assert sum(final.counts.values()) == len(anon_records) + len(user_records)
