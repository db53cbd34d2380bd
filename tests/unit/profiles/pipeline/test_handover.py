"""Identity stitching through the updater: seal, merge, forwards, across two owners, with
redelivery, equal to the offline oracle (``tests/integration/oracle.py``)."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from profiles.core import handover
from profiles.core.config import ProfileConfig
from profiles.core.ownership import owner
from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.core.stitch import merge_id
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.tags.event_tags import event_tags
from tests.integration.oracle import behaviour, expected_stitched
from tests.unit.profiles.pipeline.test_updater import Words

DAY0 = 1_700_000_000_000
CFG = ProfileConfig(half_life_ms=3_600_000, lateness_ms=30 * 86_400_000)
PARTS = 2


def _event(n: int, user: str, rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["click", "search", "purchase", "add_to_cart"])
    e: dict[str, Any] = {
        "event_id": f"e{n}",
        "type": kind,
        "schema_version": 1,
        "user_id": user,
        "ts": DAY0 + rng.randrange(0, 6 * 3_600_000),
    }
    if kind == "search":
        e["query"] = rng.choice(["red shoes", "tent", "blue tent"])
    elif kind == "purchase":
        item = {"product_id": f"p{n % 5}", "quantity": 2, "price": 6.25, "title": "tea"}
        e |= {"order_id": f"o{n}", "items": [item], "amount": 12.5, "currency": "USD"}
    else:
        e |= {"product_id": f"p{n % 5}", "title": "trail shoe", "category": ["Shoes"]}
    return e


def traffic(seed: int) -> tuple[list[Record], dict[str, str]]:
    """Input records on two input partitions: users, anonymous ids, links (some racing with
    traffic on both ids, some anonymous ids linked twice: the first link wins)."""
    rng = random.Random(seed)
    users = [f"u{i}" for i in range(4)]
    anons = [f"anon:a{i}" for i in range(6)]
    links: dict[str, str] = {}
    offsets = [0, 0]
    out: list[Record] = []
    for n in range(400):
        part = rng.randrange(2)
        src = InputPartition("site-events", part)
        who = rng.choice(users + anons)
        if rng.random() < 0.04:
            anon, user = rng.choice(anons), rng.choice(users)
            links.setdefault(anon, user)  # the offline answer: the first link of each
            link = {"type": "identify", "event_id": f"l{n}", "user_id": user, "ts": DAY0}
            events = handover.split_link({**link, "anonymous_id": anon})
            if links[anon] != user:
                events = []  # a second link goes to another partition's order: left out
        else:
            events = [_event(n, who, rng)]
        for e in events:
            out.append(Record(src, offsets[part], e))
        offsets[part] += 1
    return out, links


def run(records: list[Record], seed: int) -> MemoryStore:
    """Route ``records`` to their owners and run both owners' updaters over the routed queues
    (their own output routed back in), in random batches, some delivered twice."""
    rng = random.Random(seed)
    store = MemoryStore()
    updaters = [BatchUpdater(store, CFG, Words(), clock=lambda: 1000.0) for _ in range(PARTS)]
    queues: list[deque[Record]] = [deque() for _ in range(PARTS)]
    for r in records:
        queues[owner(r.event["user_id"], PARTS)].append(r)
    import asyncio

    async def drain() -> None:
        while any(queues):
            p = rng.randrange(PARTS)
            if not queues[p]:
                continue
            batch = [queues[p].popleft() for _ in range(min(len(queues[p]), rng.randint(1, 9)))]
            result = await updaters[p].process(batch)
            if rng.random() < 0.2:  # a redelivery: the same batch again (a new worker)
                updaters[p].forget()
                again = await updaters[p].process(batch)
                assert again.applied == 0
                result.routed += again.routed
            for r in result.routed:
                queues[owner(r.event["user_id"], PARTS)].append(r)

    asyncio.run(drain())
    return store


def test_handover_across_owners_equals_the_oracle() -> None:
    tagger = Words()
    for seed in range(4):
        records, links = traffic(seed)
        store = run(records, seed)
        by_user: dict[str, list[Record]] = {}
        for r in records:
            if r.event["type"] not in handover.CONTROL_KINDS:
                by_user.setdefault(r.event["user_id"], []).append(r)
        want = expected_stitched(by_user, links, CFG, lambda e: event_tags(e, tagger, {}))
        for uid, profile in want.items():
            got = store._load_one(uid)
            assert behaviour(got, CFG) == behaviour(profile, CFG), (seed, uid)
        for anon, user in links.items():
            sealed = store._load_one(anon)
            assert sealed.merged_into == user and anon in store._load_one(user).merged
            assert anon not in want


def _seal(anon: str, user: str, offset: int) -> Record:
    link = {"type": "identify", "event_id": f"l{offset}", "user_id": user, "ts": DAY0}
    (seal,) = handover.split_link({**link, "anonymous_id": anon})
    return Record(InputPartition("site-events", 0), offset, seal)


def test_first_link_wins_and_a_redelivered_seal_resends_the_same_merge() -> None:
    import asyncio

    async def go() -> None:
        store = MemoryStore()
        up = BatchUpdater(store, CFG, Words(), clock=lambda: 1000.0)
        click = Record(InputPartition("site-events", 0), 0, _event(0, "anon:a", random.Random(1)))
        first = await up.process([click, _seal("anon:a", "u1", 1)])
        (merge,) = first.routed
        assert merge.event["type"] == handover.MERGE and merge.event["user_id"] == "u1"
        assert merge.event["event_id"] == merge_id("anon:a", "u1")
        up.forget()
        again = await up.process([click, _seal("anon:a", "u1", 1)])
        # The click is in the snapshot (not forwarded again); the merge goes again.
        assert [r.event for r in again.routed] == [merge.event]
        later = Record(click.source, 7, {**click.event, "event_id": "e7"})
        forwarded = await up.process([later, _seal("anon:a", "u1", 8)])  # a later link: no-op
        assert [r.event for r in forwarded.routed] == [handover.forward(later, "u1").event]
        retry = Record(click.source, 9, click.event)  # the click sent again, at a new offset
        assert (await up.process([retry])).duplicates == 1  # deduplicated at the sealed profile
        other = await up.process([_seal("anon:a", "u2", 2)])
        assert other.routed == [] and other.counts["links_refused"] == 1
        assert (await store.get("anon:a")).merged_into == "u1"  # type: ignore[union-attr]
        applied = await up.process([merge])
        assert applied.counts["merges"] == 1 and applied.changes("profile_merged") == ["anon:a"]
        assert (await up.process([merge])).counts["merges"] == 0  # fenced by ``merged``
        event = applied.emits[0].build(0)
        assert (event["merge_id"], event["user_id"]) == (merge_id("anon:a", "u1"), "u1")

    asyncio.run(go())


def test_erasing_a_merged_user_erases_the_anonymous_profile() -> None:
    import asyncio

    async def go() -> None:
        store = MemoryStore()
        up = BatchUpdater(store, CFG, Words(), clock=lambda: 1000.0)
        src = InputPartition("site-events", 0)
        click = Record(src, 5, _event(0, "anon:a", random.Random(1)))
        (merge,) = (await up.process([click, _seal("anon:a", "u1", 6)])).routed
        await up.process([merge])
        erase = {"event_id": "x1", "type": "user_erasure", "schema_version": 1,
                 "user_id": "u1", "ts": DAY0, "requested_by": "dpo"}  # fmt: skip
        result = await up.process([Record(src, 3, erase)])  # an offset below the anon's own
        assert result.erased == ["u1"]
        (cascade,) = result.routed
        assert cascade.event["user_id"] == "anon:a"
        assert (await up.process([cascade])).erased == ["anon:a"]
        assert await store.get("anon:a") is None and "anon:a" in store.erased
        assert (await up.process([cascade])).erased == []  # a redelivered one is fenced

    asyncio.run(go())
