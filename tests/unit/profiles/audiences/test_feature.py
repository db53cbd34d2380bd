"""The audience feature through the batch updater and the in-memory store: entering and
leaving, consent, redelivery, erasure, and index repair after a commit conflict."""

from __future__ import annotations

from typing import Any

import orjson

from profiles.audiences.definitions import AudienceBook, definitions_from
from profiles.audiences.membership import AudienceChange, audience_event
from profiles.core import indexes
from profiles.core.ownership import owner
from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from schemas.validate import validate_output
from tests.unit.profiles.pipeline.test_updater import CFG, DAY, Words, erase, recs

RULES = {
    "audiences": [
        {"name": "buyers", "rule": {"field": "orders", "op": ">=", "value": 1}},
        {"name": "recent", "rule": {"field": "days_since_last_event", "op": "<=", "value": 7}},
        {"name": "english", "rule": {"field": "language", "op": "==", "value": "en"}},
    ]
}
MEMBERS = indexes.audience_members


def book(version: int = 1, rules: dict[str, Any] = RULES, require: bool = False) -> AudienceBook:
    b = AudienceBook(require)
    b.current = definitions_from(rules, version)
    return b


def worker(store: MemoryStore, b: AudienceBook) -> BatchUpdater:
    return BatchUpdater(
        store, CFG, Words(), builtin_features(partitions=2, audiences=b), clock=lambda: 1000.0
    )


def click(n: int, user: str, day: float, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"{user}-c{n}",
        "type": "click",
        "schema_version": 1,
        "user_id": user,
        "ts": int(day * DAY),
        "product_id": "p1",
        **extra,
    }


def purchase(n: int, user: str, day: float) -> dict[str, Any]:
    return {
        "event_id": f"{user}-p{n}",
        "type": "purchase",
        "schema_version": 1,
        "user_id": user,
        "ts": int(day * DAY),
        "order_id": f"o{n}",
        "currency": "USD",
        "amount": 10.0,
        "items": [{"product_id": "p1", "quantity": 1, "price": 10.0}],
    }


def changes(result: Any) -> list[tuple[str, str, str]]:
    return [(c.user_id, c.audience, c.change) for c in result.changes("audience_changed")]


async def test_users_enter_and_leave_and_each_change_is_announced_once() -> None:
    store = MemoryStore()
    w = worker(store, book())
    first = await w.process(recs(click(1, "a", 1, language="en"), click(1, "b", 1)))
    assert sorted(changes(first)) == [
        ("a", "english", "entered"),
        ("a", "recent", "entered"),
        ("b", "recent", "entered"),
    ]
    assert store.sets[MEMBERS("recent")] == {"a", "b"} and store.sets[MEMBERS("english")] == {"a"}
    # Due when "recent" may end: 7 days after the last event, plus a millisecond.
    assert store.scores[indexes.audience_due(owner("a", 2))]["a"] == 8 * DAY + 1
    again = await w.process(recs(click(1, "a", 1, language="en"), click(1, "b", 1)))
    assert changes(again) == []  # redelivered: fenced, nothing decided again
    later = await w.process(recs(purchase(2, "a", 2), click(3, "a", 3, language="zh"), start=2))
    assert changes(later) == [("a", "english", "left"), ("a", "buyers", "entered")]
    events = [audience_event(c, 5) for c in later.changes("audience_changed")]
    for event in events:
        validate_output("audience_changed", event)
    # The user's 3rd and 4th changes.
    assert [e["event_id"] for e in events] == ["a:aud:3:english:left", "a:aud:4:buyers:entered"]
    assert events[-1]["audiences"] == ["buyers", "recent"] and events[-1]["version"] == 1
    state = orjson.loads(store.field("a", "au") or b"{}")
    assert state["m"] == {"buyers": 1, "recent": 1} and state["language"] == [3 * DAY, "zh"]


async def test_consent_false_takes_a_user_out_of_every_audience_latest_event_time_wins() -> None:
    store = MemoryStore()
    w = worker(store, book())
    await w.process(recs(purchase(1, "c", 1), click(2, "c", 1.5, language="en")))
    assert len(orjson.loads(store.field("c", "au") or b"{}")["m"]) == 3
    out = await w.process(recs(click(3, "c", 2, consent=False), start=2))
    assert sorted(changes(out)) == [
        ("c", "buyers", "left"),
        ("c", "english", "left"),
        ("c", "recent", "left"),
    ]
    assert all("c" not in store.sets[MEMBERS(n)] for n in ("buyers", "recent", "english"))
    assert "c" not in store.scores[indexes.audience_due(owner("c", 2))]
    # An older event saying yes (arriving late) does not override the later no.
    late = await w.process(recs(click(4, "c", 1.8, consent=True), start=3))
    assert changes(late) == []
    back = await w.process(recs(click(5, "c", 3, consent=True), start=4))
    assert len(changes(back)) == 3 and "c" in store.sets[MEMBERS("buyers")]


async def test_opt_in_mode_needs_a_yes() -> None:
    store = MemoryStore()
    w = worker(store, book(require=True))
    silent = await w.process(recs(click(1, "d", 1)))
    assert changes(silent) == []
    yes = await w.process(recs(click(2, "d", 2, consent=True), start=1))
    assert changes(yes) == [("d", "recent", "entered")]


async def test_erasure_removes_the_user_from_every_audience_and_the_due_index() -> None:
    store = MemoryStore()
    w = worker(store, book())
    await w.process(recs(purchase(1, "e", 1), click(2, "e", 1, language="en")))
    assert all("e" in store.sets[MEMBERS(n)] for n in ("buyers", "recent", "english"))
    population = store.sets[indexes.audience_users(owner("e", 2))]
    assert "e" in population
    gone = await w.process(recs(erase(3, "e"), start=2))
    assert gone.erased == ["e"]
    assert all("e" not in store.sets[MEMBERS(n)] for n in ("buyers", "recent", "english"))
    assert "e" not in population
    assert all("e" not in due for due in store.scores.values())


async def test_a_new_version_re_decides_at_the_next_write() -> None:
    store = MemoryStore()
    b = book()
    w = worker(store, b)
    await w.process(recs(purchase(1, "f", 1)))
    b.current = definitions_from(
        {"audiences": [{"name": "buyers", "rule": {"field": "orders", "op": ">=", "value": 2}}]},
        2,
    )
    result = await w.process(recs(click(2, "f", 2), start=1))
    assert changes(result) == [("f", "buyers", "left"), ("f", "recent", "left")]
    assert [c.version for c in result.changes("audience_changed")] == [2, 2]


async def test_a_conflicting_attempt_leaves_the_indexes_as_the_stored_state_implies() -> None:
    store = MemoryStore()
    b = book()
    w = worker(store, b)
    await w.process(recs(click(1, "g", 1, language="en")))
    # Another worker wrote g meanwhile (a rebalance): it said zh. Our attempt (still en)
    # conflicts; its index ops landed anyway and the retry must take them back.
    other = worker(store, b)
    await other.process(recs(click(2, "g", 2, language="zh"), start=5))
    result = await w.process(recs(click(3, "g", 3), start=9))
    assert result.conflicts == 1
    assert "g" not in store.sets[MEMBERS("english")] and "g" in store.sets[MEMBERS("recent")]


def test_the_event_matches_its_schema() -> None:
    change = AudienceChange("u", "vip", "left", 4, (), 9, 1, 2)
    event = audience_event(change, 3)
    validate_output("audience_changed", event)
    assert event["event_id"] == "u:aud:9:vip:left" and event["audiences"] == []
