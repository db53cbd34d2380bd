"""Identity stitching through real workers on the real broker and Redis (README "Identity
stitching"): anonymous sessions that log in, merges racing with traffic on both ids, input
sent twice, a rebalance onto a second worker and a SIGKILL of the first; the profiles equal
the offline oracle's (``expected_stitched``), each merge is announced once, and erasing a
merged user erases the anonymous data."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka.partitioner import DefaultPartitioner

from profiles.core.profile import Profile
from profiles.core.stitch import merge_id
from profiles.redis import keys
from profiles.tags.event_tags import event_tags
from profiles.tags.extractor import TagExtractor
from schemas.validate import validate_output
from stream.settings import Settings
from stream.simulation.anonymous import with_logins
from stream.simulation.generator import TrafficConfig, TrafficGenerator
from stream.simulation.segment import iso_timestamp, render
from tests.integration.harness import Consumed, Names, Worker, produce, read_topic
from tests.integration.oracle import (
    behaviour,
    eventually,
    expected_stitched,
    replay_links,
    replay_log,
)
from tests.integration.test_ops import scrape

pytestmark = pytest.mark.integration

CONFIG = Settings.from_env({}).profile
INPUT_PARTITIONS = 4  # RTP_INPUT_PARTITIONS' default: the test picks keys on two of them


def _key(call: dict[str, Any]) -> bytes:
    if call.get("messageId") in RACE_KEYS:
        return RACE_KEYS[call["messageId"]]
    who = call.get("userId") or call.get("anonymousId") or call.get("user_id")
    return str(who or call.get("product_id")).encode()


def _partition(key: str) -> int:
    parts = list(range(INPUT_PARTITIONS))
    return int(DefaultPartitioner()(key.encode(), parts, parts))


#: Partition keys of the race's calls (by messageId), where not the calls' own (``_key``).
RACE_KEYS: dict[str, bytes] = {}


def _race(ts: int) -> list[dict[str, Any]]:
    """An anonymous id whose events keep coming on its input partition while its login comes
    on another: the seal races with traffic on both ids. The user's calls that carry both ids
    are keyed by the anonymous id, so the user's own fence on that partition runs ahead of the
    anonymous events forwarded there (they must be fenced apart: ``<partition>~anon:<id>``)."""
    anon = next(f"race-{i}" for i in range(100) if _partition(f"race-{i}") != _partition("racer"))

    def click(n: int, who: dict[str, str]) -> dict[str, Any]:
        return {"type": "track", "event": "Product Viewed", "messageId": f"race-{n}", **who,
                "timestamp": iso_timestamp(ts + n * 1000),
                "properties": {"product_id": f"rp{n % 3}", "name": "racing shoe",
                               "category": "Shoes"}}  # fmt: skip

    login = {"type": "identify", "messageId": "race-login", "userId": "racer",
             "anonymousId": anon, "timestamp": iso_timestamp(ts + 5_500)}  # fmt: skip
    calls = [click(n, {"anonymousId": anon}) for n in range(5)] + [login]
    for n in range(5, 30):  # both ids busy during the handover
        if n % 2:
            calls.append(click(n, {"anonymousId": anon}))
        else:
            calls.append(click(n, {"userId": "racer", "anonymousId": anon}))
            RACE_KEYS[f"race-{n}"] = anon.encode()  # on the anonymous id's partition
    calls.append(click(30, {"userId": "racer"}))
    return calls


def _traffic() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The catalog (sent first: tags read it, and the oracle reads the final one), then the
    traffic."""
    gen = TrafficGenerator(TrafficConfig(seed=17, users=25, products=80))
    catalog = list(gen.catalog())
    events = list(with_logins(gen.history(2.0), share=0.6))
    calls = [render(e) for e in events]
    calls += _race(max(int(e["ts"]) for e in events) + 1)
    # Each call twice in a row: a producer's retry, deduplicated by event id wherever the
    # event lands (the anonymous profile, or the user it was merged into).
    return catalog, [c for call in calls for c in (call, call)]


@pytest.fixture
async def second_worker(worker_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Worker]:
    proc = Worker(worker_env, tmp_path / "second.log")
    yield proc
    if proc.proc is not None:
        proc.stop()


async def _stored(client: aioredis.Redis, ids: list[str]) -> dict[str, Profile | None]:
    pipe = client.pipeline(transaction=False)
    for uid in ids:
        pipe.hget(keys.profile(uid), "d")
    blobs = await pipe.execute()
    return {
        uid: None if blob is None else Profile.from_bytes(uid, 0, blob)
        for uid, blob in zip(ids, blobs, strict=True)
    }


@pytest.mark.timeout(720)  # two worker start-ups and a kill on a loaded machine
async def test_logins_merge_once_through_a_rebalance_and_a_kill_equal_to_the_oracle(
    worker: Worker,
    second_worker: Worker,
    brokers: str,
    names: Names,
    redis_client: aioredis.Redis,
) -> None:
    catalog, calls = _traffic()
    await produce(brokers, names.input, catalog, key=_key)

    async def catalogued() -> bool:
        pipe = redis_client.pipeline(transaction=False)
        for item in catalog:
            pipe.exists(keys.item(item["product_id"]))
        return all(await pipe.execute())

    await eventually(catalogued, timeout=120)
    half = len(calls) // 2
    await produce(brokers, names.input, calls[:half], key=_key)
    second_worker.start()  # a rebalance: the routed partitions split across two workers
    await second_worker.wait_ready(timeout=120)
    await produce(brokers, names.input, calls[half:], key=_key)
    await asyncio.sleep(2.0)
    worker.kill()  # SIGKILL mid-stream: its uncommitted batches are redelivered to the other

    total = len(catalog) + len(calls)
    log = await read_topic(brokers, names.input, lambda got: len(got) >= total)
    items, by_user = replay_log(names.input, log)
    links = replay_links(log)
    assert len(links) >= 5 and any(a.startswith("anon:race-") for a in links)
    for anon in links:  # a login at the session's first event: an empty anonymous profile,
        by_user.setdefault(anon, [])  # sealed and merged all the same
    tagger = TagExtractor()
    want = expected_stitched(by_user, links, CONFIG, lambda e: event_tags(e, tagger, items))
    want_behaviour = {uid: behaviour(p, CONFIG) for uid, p in want.items()}
    ids = sorted(want) + sorted(links)

    def differ(stored: dict[str, Profile | None]) -> list[str]:
        bad = []
        for uid, expected in want_behaviour.items():
            got = stored.get(uid)
            have = None if got is None else behaviour(got, CONFIG)
            if have != expected:
                fields = sorted(k for k in expected if have is None or have[k] != expected[k])
                bad.append(f"{uid}: {fields}")
        for anon, user in links.items():
            got = stored.get(anon)
            if got is None or got.merged_into != user:
                bad.append(f"{anon}: not sealed into {user}")
        return bad

    async def matches() -> bool:
        return not differ(await _stored(redis_client, ids))

    try:
        await eventually(matches, timeout=420)
    except AssertionError:
        pytest.fail(f"profiles differ: {differ(await _stored(redis_client, ids))[:8]}")

    # Downstream: one profile_merged per link (a redelivered merge is fenced, not announced;
    # a batch retried after a kill may announce again: merge_id lets consumers dedupe).
    def announced(got: list[Consumed]) -> bool:
        return {orjson.loads(m.value or b"{}")["merge_id"] for m in got} >= wanted

    wanted = {merge_id(anon, user) for anon, user in links.items()}
    merged = await read_topic(brokers, names.merged, announced, timeout=120)
    for message in merged:
        event = orjson.loads(message.value or b"{}")
        validate_output("profile_merged", event)
        assert message.key == event["user_id"].encode()
        assert links[event["anonymous_profile"]] == event["user_id"]
    metrics = await scrape(second_worker)
    assert ("rtp_profile_merges_total", ()) in metrics


async def test_erasing_a_merged_user_erases_the_anonymous_data(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    ts = int(time.time() * 1000) - 60_000
    seen = {"type": "track", "event": "Product Viewed", "messageId": "v1", "anonymousId": "dev-9",
            "timestamp": iso_timestamp(ts), "properties": {"product_id": "p1"}}  # fmt: skip
    login = {"type": "identify", "messageId": "l1", "userId": "erin", "anonymousId": "dev-9",
             "timestamp": iso_timestamp(ts + 1000)}  # fmt: skip
    bought = {**seen, "messageId": "v2", "userId": "erin", "timestamp": iso_timestamp(ts + 2000)}
    await produce(brokers, names.input, [seen, login, bought], key=_key)

    async def merged() -> bool:
        got = (await _stored(redis_client, ["erin"]))["erin"]
        return got is not None and got.merged == ["anon:dev-9"] and got.counts == {"click": 2}

    await eventually(merged, timeout=120)
    assert await redis_client.exists(keys.profile("anon:dev-9")) == 1
    erase = {"event_id": "x-1", "type": "user_erasure", "schema_version": 1, "user_id": "erin",
             "ts": ts + 3000, "requested_by": "dpo"}  # fmt: skip
    await produce(brokers, names.input, [erase, erase], key=_key)  # sent twice

    async def erased() -> bool:
        found = await redis_client.exists(keys.profile("erin"), keys.profile("anon:dev-9"))
        return found == 0

    await eventually(erased, timeout=120)
    # A later event of the device starts a fresh anonymous profile, linked to no one.
    later = {**seen, "messageId": "v3", "timestamp": iso_timestamp(ts + 4000)}
    await produce(brokers, names.input, [later], key=_key)

    async def fresh() -> bool:
        got = (await _stored(redis_client, ["anon:dev-9"]))["anon:dev-9"]
        return got is not None and got.counts == {"click": 1} and got.merged_into is None

    await eventually(fresh, timeout=120)
