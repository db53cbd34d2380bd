"""Pair counts through the batch updater and the in-memory store: same order, same session,
views, the per-session cap, redelivery, late events and erasure."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.together.counts import FencedPairs
from profiles.together.feature import TogetherFeature
from profiles.together.session import SessionConfig
from tests.unit.profiles.pipeline.test_updater import CFG, DAY, Words, erase

H = 1000 * DAY  # long half-life: counts stay whole numbers


def order(eid: str, user: str, ts: int, items: list[str], sid: str | None = "s1") -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": eid,
        "type": "purchase",
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
        "order_id": f"o-{eid}",
        "currency": "USD",
        "amount": 1.0,
        "items": [{"product_id": p, "quantity": 1, "price": 1.0} for p in items],
    }
    if sid is not None:
        event["session_id"] = sid
    return event


def click(eid: str, user: str, ts: int, pid: str, sid: str | None = "s1") -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": eid,
        "type": "click",
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
        "product_id": pid,
    }
    if sid is not None:
        event["session_id"] = sid
    return event


def updater(store: MemoryStore, max_items: int = 20) -> BatchUpdater:
    feature = TogetherFeature(SessionConfig(max_items, gap_ms=1_800_000), 4, H, neighbours=50)
    return BatchUpdater(store, CFG, Words(), [feature], clock=lambda: 1000.0)


def at(*events: dict[str, Any], start: int = 0, partition: int = 0) -> list[Record]:
    source = InputPartition("routed", partition)
    return [Record(source, start + i, e) for i, e in enumerate(events)]


def pairs(store: MemoryStore, kind: str = "b") -> dict[tuple[str, str], float]:
    out = {}
    for name, counts in store.together.items():
        if name.startswith("i:"):
            for other, v in counts.neighbours.get(kind, {}).items():
                out[(name[2:], other)] = round(v, 3)
    return out


def marginals(store: MemoryStore) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, counts in store.together.items():
        if name.startswith("m:"):
            for field, v in counts.counts.items():
                out[field] = out.get(field, 0.0) + round(v, 3)
    return out


async def test_one_order_pairs_its_items_both_ways() -> None:
    store = MemoryStore()
    await updater(store).process(at(order("e1", "u1", DAY, ["phone", "case", "film"])))
    expected = {(a, b): 1.0 for a, b in combinations(["phone", "case", "film"], 2)}
    expected |= {(b, a): 1.0 for a, b in expected}
    assert pairs(store) == expected
    assert marginals(store) == {"b": 1.0, "b:phone": 1.0, "b:case": 1.0, "b:film": 1.0}


async def test_orders_of_one_session_pair_and_sessions_count_once() -> None:
    store = MemoryStore()
    up = updater(store)
    await up.process(at(order("e1", "u1", DAY, ["phone"]), click("e2", "u1", DAY + 5, "case")))
    # Another batch, same session: pairs with what the session bought before.
    await up.process(at(order("e3", "u1", DAY + 60_000, ["case", "phone"]), start=2))
    assert pairs(store) == {("phone", "case"): 1.0, ("case", "phone"): 1.0}
    assert pairs(store, "v") == {}  # one viewed item: no view pair
    m = marginals(store)
    assert (m["b"], m["b:phone"], m["b:case"], m["v"], m["v:case"]) == (1.0, 1.0, 1.0, 1.0, 1.0)
    # A new session of another user adds a transaction.
    await up.process(at(order("e4", "u2", DAY, ["phone", "case"], sid="s9"), start=3))
    assert pairs(store)[("phone", "case")] == 2.0
    assert marginals(store)["b"] == 2.0


async def test_redelivery_counts_nothing_twice() -> None:
    events = [
        order("e1", "u1", DAY, ["a", "b"]),
        click("e2", "u1", DAY + 1, "c"),
        click("e3", "u1", DAY + 2, "a"),
        order("e4", "u2", DAY, ["a", "c"], sid="s2"),
    ]
    once = MemoryStore()
    await updater(once).process(at(*events))
    twice = MemoryStore()
    up = updater(twice)
    await up.process(at(*events[:2]))
    await up.process(at(*events))  # the first two again, then the rest
    await up.process(at(*events))
    fresh = updater(twice)  # another worker, profiles from the store: fenced again
    await fresh.process(at(*events))
    assert pairs(twice) == pairs(once) and pairs(twice, "v") == pairs(once, "v")
    assert marginals(twice) == marginals(once)
    assert pairs(once, "v") == {("c", "a"): 1.0, ("a", "c"): 1.0}


async def test_lost_count_write_is_redone_from_the_stored_session() -> None:
    """Profiles written but the pair counts lost (a Redis crash mid-pipeline): the redelivered
    events are fenced in the profile, and still add exactly what they would have."""
    events = [order("e1", "u1", DAY, ["a", "b"]), click("e2", "u1", DAY + 1, "a")]
    store = MemoryStore()
    await updater(store).process(at(*events))
    expected = pairs(store), marginals(store)
    store.together.clear()
    await updater(store).process(at(*events))
    assert (pairs(store), marginals(store)) == expected


async def test_cap_bounds_the_pairs_of_a_huge_basket() -> None:
    store = MemoryStore()
    at_cap = [f"p{i:02d}" for i in range(4)]
    await updater(store, max_items=4).process(at(order("e1", "u1", DAY, at_cap)))
    assert len(pairs(store)) == 4 * 3  # every pair, both ways
    big = MemoryStore()
    items = [f"p{i:02d}" for i in range(500)]
    await updater(big, max_items=4).process(at(order("e1", "u1", DAY, items)))
    assert pairs(big) == pairs(store)  # past the cap: the first 4 only
    assert set(marginals(big)) == {"b", *(f"b:{p}" for p in at_cap)}


async def test_sessions_without_ids_split_on_the_gap() -> None:
    store = MemoryStore()
    await updater(store).process(
        at(
            order("e1", "u1", DAY, ["a"], sid=None),
            order("e2", "u1", DAY + 600_000, ["b"], sid=None),  # 10 min later: same session
            order("e3", "u1", DAY + 5 * 3_600_000, ["c"], sid=None),  # 5 h later: a new one
        )
    )
    assert pairs(store) == {("a", "b"): 1.0, ("b", "a"): 1.0}
    assert marginals(store)["b"] == 2.0


async def test_late_event_of_an_older_session_pairs_with_nothing() -> None:
    store = MemoryStore()
    await updater(store).process(
        at(
            order("e1", "u1", DAY + 3_600_000, ["a"], sid="s2"),
            order("e2", "u1", DAY, ["b"], sid="s1"),  # an hour earlier, another session
        )
    )
    assert pairs(store) == {}
    assert marginals(store) == {"b": 1.0, "b:a": 1.0}


async def test_erasure_deletes_the_session_and_keeps_item_counts() -> None:
    store = MemoryStore()
    up = updater(store)
    await up.process(at(order("e1", "u1", DAY, ["a", "b"])))
    assert store.field("u1", "tg") is not None
    await up.process(at(erase(9, "u1"), start=5))
    assert "u1" not in store.profiles
    # Item-level counts name no user: they stay.
    assert pairs(store) == {("a", "b"): 1.0, ("b", "a"): 1.0}
    # After the erasure the user starts a new session: no pair with the erased one.
    await up.process(at(order("e2", "u1", DAY + 10, ["c"]), start=6))
    assert ("c", "a") not in pairs(store)


def test_neighbours_are_trimmed_to_the_cap_largest_first() -> None:
    c = FencedPairs(half_life_ms=H, cap=2)
    c.add([("s", 1, 0, "b:x", 1.0), ("s", 1, 0, "b:y", 3.0), ("s", 1, 0, "b:z", 2.0)])
    assert c.neighbours["b"] == {"y": 3.0, "z": 2.0}
    c.add([("s", 2, 0, "b:x", 5.0)])  # x came back: from zero, now the largest
    assert c.neighbours["b"] == {"x": 5.0, "y": 3.0}


async def test_owner_partitions_count_an_item_in_their_own_order() -> None:
    """Users of two owner partitions (u1: 2, u2: 0) are applied by different agents, so one
    input partition's offsets reach an item out of order: each pair keeps its own fence."""
    store = MemoryStore()
    up = updater(store)
    await up.process(at(order("e1", "u1", DAY, ["a", "b"]), start=10))
    await up.process(at(order("e2", "u2", DAY, ["a", "b"], sid="s2"), start=5))
    assert pairs(store) == {("a", "b"): 2.0, ("b", "a"): 2.0}
    await up.process(at(order("e1", "u1", DAY, ["a", "b"]), start=10))  # redelivered
    assert pairs(store)[("a", "b")] == 2.0


async def test_views_off_counts_orders_only() -> None:
    store = MemoryStore()
    feature = TogetherFeature(SessionConfig(views=False), 4, H, neighbours=50)
    up = BatchUpdater(store, CFG, Words(), [feature], clock=lambda: 1000.0)
    await up.process(
        at(
            click("e1", "u1", DAY, "a"),
            click("e2", "u1", DAY + 1, "b"),
            order("e3", "u1", DAY + 2, ["a", "c"]),
        )
    )
    assert pairs(store, "v") == {} and pairs(store) == {("a", "c"): 1.0, ("c", "a"): 1.0}
    assert "v" not in marginals(store)
