"""BatchUpdater over the in-memory store: idempotence, erasure, conflicts, catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record
from profiles.pipeline.feature import Batch, Feature, ScoreSet, SetAdd, SetRemove, Stats, UserResult
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater

DAY = 86_400_000
CFG = ProfileConfig(half_life_ms=10 * DAY, lateness_ms=DAY)


class Words:
    """A predictable tagger: every word is a tag."""

    def text(self, text: str) -> tuple[tuple[str, float], ...]:
        words = text.lower().split()
        return tuple((w, 1 / len(words)) for w in words)

    def category(self, path: Sequence[str]) -> tuple[tuple[str, float], ...]:
        return ((path[-1].lower(), 1.0),) if path else ()


def click(n: int, user: str, ts: int = DAY, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "type": "click",
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
        "product_id": extra.pop("product_id", "p1"),
        **extra,
    }


def erase(n: int, user: str) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "type": "user_erasure",
        "schema_version": 1,
        "user_id": user,
        "ts": DAY,
        "requested_by": "privacy-desk",
    }


def recs(*events: dict[str, Any], start: int = 0) -> list[Record]:
    return [Record(InputPartition("site-events", 0), start + i, e) for i, e in enumerate(events)]


def updater(store: MemoryStore) -> BatchUpdater:
    return BatchUpdater(store, CFG, Words(), clock=lambda: 1000.0)


async def test_one_commit_per_batch_and_announcements() -> None:
    store = MemoryStore()
    result = await updater(store).process(
        recs(
            click(1, "a", title="red shoes"),
            click(2, "b", title="blue hat"),
            click(3, "a", title="red scarf"),
        )
    )
    assert store.commits == 1
    assert sorted(p.user_id for p in result.updated) == ["a", "b"]
    assert result.applied == 3
    a = await store.get("a")
    assert a is not None and a.version == 1 and a.counts == {"click": 2}
    assert {t for t, _ in a.top_tags(3, CFG.half_life_ms)} >= {"red"}


async def test_redelivered_batch_changes_nothing_but_is_reannounced() -> None:
    store = MemoryStore()
    batch = recs(click(1, "a", title="x"), click(2, "a", title="y"))
    await updater(store).process(batch)
    before = store.profiles["a"]
    # A fresh worker (empty cache) after a crash that lost the emission.
    again = await updater(store).process(batch)
    assert store.profiles["a"] == before
    assert (again.applied, again.fenced) == (0, 2)
    assert [p.version for p in again.updated] == [1]


async def test_erasure_deletes_and_redelivery_does_not_resurrect() -> None:
    store = MemoryStore()
    worker = updater(store)
    await worker.process(recs(click(1, "a", title="x")))
    batch = recs(
        click(1, "a", title="x"),
        click(2, "a", title="y"),
        erase(3, "a"),
        click(4, "a", title="after"),
        start=0,
    )
    result = await worker.process(batch)
    assert result.erased == ["a"]
    fresh = await store.get("a")
    assert fresh is not None and fresh.counts == {"click": 1}
    assert {t for t, _ in fresh.top_tags(5, CFG.half_life_ms)} == {"after", "p1"} - {"p1"}
    assert store.erased["a"][2]["requested_by"] == "privacy-desk"
    # Everything again, from a fresh worker: nothing before the erasure comes back.
    again = await updater(store).process(batch)
    assert again.applied == 0 and again.erased == []
    assert (await store.get("a")) == fresh


async def test_version_conflict_reloads_and_applies_once() -> None:
    store = MemoryStore()
    first, second = updater(store), updater(store)
    await first.process(recs(click(1, "a", title="x")))
    # Another worker takes the user over for a while (rebalance) and writes it.
    await second.process(recs(click(2, "a", title="y"), start=1))
    result = await first.process(recs(click(3, "a", title="z"), start=2))
    assert result.conflicts == 1
    final = await store.get("a")
    assert final is not None and final.counts == {"click": 3} and final.version == 3


def search(n: int, user: str) -> dict[str, Any]:
    return {**click(n, user), "type": "search", "query": "tea"}


class Leaning(Feature):
    """A diff-style index like segments: users who click more than they search, or not."""

    name = "leaning"

    @staticmethod
    def label(profile: Profile) -> str:
        counts = profile.counts
        return "clicker" if counts.get("click", 0) > counts.get("search", 0) else "searcher"

    def attach(self, profile: Profile, stats: Stats) -> None:
        profile.parts[self.name] = self.label(profile)  # the label as read, before the batch

    async def compute(self, batch: Batch, users: Sequence[UserResult], stats: Stats) -> None:
        for user in users:
            before, now = user.profile.parts[self.name], self.label(user.profile)
            if user.write and now != before:
                user.ops += [SetRemove(before, user.user_id), SetAdd(now, user.user_id)]

    def indexed(self, profile: Profile) -> list[SetAdd | ScoreSet]:
        return [SetAdd(self.label(profile), profile.user_id)]


async def test_a_conflicting_attempts_index_ops_are_undone_on_retry() -> None:
    store = MemoryStore()
    first, second = (BatchUpdater(store, CFG, Words(), [Leaning()]) for _ in range(2))
    await first.process(recs(click(0, "a")))
    assert store.sets == {"clicker": {"a"}}
    # A rebalance: another worker applies offsets 1-2 and ends where it started (clicker).
    await second.process(recs(search(1, "a"), click(2, "a"), start=1))
    # The old owner, from its stale copy, applies offset 1 again: it computes "searcher" and
    # its index ops land with the failed write; the retry finds offset 1 fenced.
    result = await first.process(recs(search(1, "a"), start=1))
    assert result.conflicts == 1 and result.fenced == 1 and result.applied == 0
    assert store.sets == {"clicker": {"a"}, "searcher": set()}


async def test_late_events_become_dead_letters() -> None:
    store = MemoryStore()
    result = await updater(store).process(
        recs(click(1, "a", ts=10 * DAY, title="x"), click(2, "a", ts=10 * DAY - 2 * DAY, title="y"))
    )
    assert [(d.reason, d.record.offset) for d in result.dead] == [("too_late", 1)]


async def test_catalog_fills_in_missing_titles() -> None:
    store = MemoryStore()
    product = {
        "event_id": "c1",
        "type": "product",
        "schema_version": 1,
        "user_id": "catalog",
        "ts": 1,
        "product_id": "p9",
        "title": "Espresso Machine",
        "category": ["Home", "Coffee"],
        "price": 99.0,
        "currency": "USD",
    }
    await updater(store).process(recs(product))
    assert store.items["p9"]["title"] == "Espresso Machine"
    result = await updater(store).process(recs(click(2, "a", product_id="p9"), start=1))
    tags = {t for t, _ in result.updated[0].top_tags(5, CFG.half_life_ms)}
    assert tags == {"espresso", "machine", "coffee"}


async def test_older_catalog_update_loses() -> None:
    store = MemoryStore()
    new = {
        "event_id": "c2",
        "type": "product",
        "schema_version": 1,
        "user_id": "catalog",
        "ts": 5,
        "product_id": "p",
        "title": "New",
        "category": ["A"],
        "price": 1.0,
        "currency": "USD",
    }
    old = {**new, "event_id": "c1", "ts": 4, "title": "Old"}
    await updater(store).process(recs(new, old))
    assert store.items["p"]["title"] == "New"


async def test_a_seen_title_never_describes_another_users_event() -> None:
    # Another user's click described p7 first (a *seen* catalog entry, for the item index):
    # which user that was depends on processing order, so it must not fill in this click.
    store = MemoryStore()
    store.items["p7"] = {"product_id": "p7", "title": "Blue Hat", "category": ["Hats"]}
    store.items["p7"]["seen_in"] = "click"
    result = await updater(store).process(recs(click(1, "a", product_id="p7")))
    assert result.updated[0].top_tags(5, CFG.half_life_ms) == []
    # The event's own title still counts, and a product event's entry still fills in.
    own = await updater(store).process(
        recs(click(2, "b", product_id="p7", title="Red Scarf", category=["Scarves"]), start=1)
    )
    assert {t for t, _ in own.updated[0].top_tags(5, CFG.half_life_ms)} == {
        "red",
        "scarf",
        "scarves",
    }
    store.items["p7"] = {"product_id": "p7", "title": "Blue Hat", "category": ["Hats"]}
    known = await updater(store).process(recs(click(3, "c", product_id="p7"), start=2))
    assert {t for t, _ in known.updated[0].top_tags(5, CFG.half_life_ms)} == {"blue", "hat", "hats"}


def test_chunk_examples_run() -> None:
    import doctest

    import profiles.pipeline.updater as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


async def test_a_batch_applied_in_chunks_stores_what_it_would_whole() -> None:
    from profiles.pipeline.updater import chunks

    product = {
        "event_id": "c1",
        "type": "product",
        "schema_version": 1,
        "user_id": "catalog",
        "ts": 1,
        "product_id": "p1",
        "title": "Espresso Machine",
        "category": ["Home", "Coffee"],
        "price": 99.0,
        "currency": "USD",
    }
    events = [click(i, f"u{i % 7}", ts=DAY + i, title=f"t{i % 5} cup") for i in range(60)]
    batch = recs(*events[:30], product, *events[30:])
    whole, parted = MemoryStore(), MemoryStore()
    await updater(whole).process(batch)
    worker = updater(parted)
    parts = chunks(batch, 10)
    assert len(parts) > 3 and sum(map(len, parts)) == len(batch)
    assert parts[0][0].event["type"] == "product"
    for part in parts:
        await worker.process(part)
    assert parted.profiles == whole.profiles and parted.items == whole.items
