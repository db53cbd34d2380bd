"""The sentiment feature through the batch updater and the in-memory store: per-user state,
per-product counters, ``negative_review`` alerts, redelivery, erasure, no raw text kept."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.downstream import profile_updated
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.sentiment.feature import COUNTER, THREAD_CHARS, SentimentFeature, alert_event
from profiles.sentiment.scorer import SentimentScorer
from profiles.sentiment.state import item_summary
from schemas.validate import validate_output
from tests.unit.profiles.pipeline.test_updater import CFG, DAY, Words, erase, recs

BAD = "Awful. It broke after one day, the worst purchase ever. Very disappointed."
GOOD = "Excellent, works perfectly and arrived early. Love it!"
BAD_ZH = "质量太差了，用了两天就坏了，客服也不理人，很失望。"


@pytest.fixture(scope="module")
def scorer() -> SentimentScorer:
    return SentimentScorer()


def review(
    n: int, user: str, text: str, rating: int, day: float = 1, pid: str = "p1"
) -> dict[str, Any]:
    return {
        "event_id": f"{user}-r{n}",
        "type": "review",
        "schema_version": 1,
        "user_id": user,
        "ts": int(day * DAY),
        "product_id": pid,
        "rating": rating,
        "text": text,
    }


def purchase(n: int, user: str, amount: float) -> dict[str, Any]:
    return {
        "event_id": f"{user}-p{n}",
        "type": "purchase",
        "schema_version": 1,
        "user_id": user,
        "ts": DAY // 2,
        "order_id": f"{user}-o{n}",
        "currency": "USD",
        "amount": amount,
        "items": [{"product_id": "p1", "quantity": 1, "price": amount}],
    }


def worker(store: MemoryStore, scorer: SentimentScorer, min_spend: float = 100.0) -> BatchUpdater:
    feature = SentimentFeature(
        scorer, 2, half_life_ms=10 * DAY, item_half_life_ms=10 * DAY, alert_min_spend=min_spend
    )
    features = builtin_features(partitions=2, sentiment=feature)
    return BatchUpdater(store, CFG, Words(), features, clock=lambda: 1000.0)


def product(store: MemoryStore, pid: str) -> dict[str, Any] | None:
    merged: dict[str, float] = {}
    for counts in store.counters[COUNTER].values():
        for name in (f"s:{pid}", f"n:{pid}", f"x:{pid}"):
            merged[name] = merged.get(name, 0.0) + counts.decayed(name, 10 * DAY)
    return item_summary(merged, pid)


async def test_reviews_build_the_users_state_from_text_not_stars(scorer: SentimentScorer) -> None:
    store = MemoryStore()
    await worker(store, scorer).process(
        recs(review(1, "a", BAD, 5), review(2, "a", GOOD, 1, day=2), review(3, "a", BAD_ZH, 2))
    )
    state = orjson.loads(store.field("a", "sn") or b"null")
    assert (state["reviews"], state["negative"], state["positive"]) == (3, 2, 1)
    assert state["high_stars_negative_text"] == 1  # 5 stars, negative text
    assert state["low_stars_positive_text"] == 1  # 1 star, positive text
    assert state["sum"] / state["w"] < 0  # two negatives out of three
    raw = b"".join(v for v in store.profiles["a"][2].values() if isinstance(v, bytes))
    assert b"Awful" not in raw and BAD_ZH.encode() not in raw  # the text is never stored


async def test_products_get_a_decayed_aggregate(scorer: SentimentScorer) -> None:
    store = MemoryStore()
    await worker(store, scorer).process(
        recs(
            review(1, "a", BAD, 1, pid="x"),
            review(1, "b", GOOD, 5, pid="x"),
            review(2, "b", GOOD, 5, pid="y"),
        )
    )
    x, y = product(store, "x"), product(store, "y")
    assert x is not None and y is not None and product(store, "z") is None
    assert x["negative_share"] == pytest.approx(0.5) and abs(x["score"]) < 0.5
    assert y["score"] > 0.5 and y["negative_share"] == 0.0


async def test_redelivery_counts_nothing_twice(scorer: SentimentScorer) -> None:
    store = MemoryStore()
    w = worker(store, scorer)
    batch = recs(purchase(1, "a", 300.0), review(1, "a", BAD, 5, pid="x"))
    first = await w.process(batch)
    assert len(first.changes("negative_review")) == 1
    before = (store.field("a", "sn"), product(store, "x"))
    w.forget()  # a restarted worker: fresh cache, same store
    again = await w.process(batch)
    assert again.changes("negative_review") == []
    assert (store.field("a", "sn"), product(store, "x")) == before


async def test_alerts_need_a_strong_negative_from_a_valuable_customer(
    scorer: SentimentScorer,
) -> None:
    store = MemoryStore()
    result = await worker(store, scorer, min_spend=100.0).process(
        recs(
            purchase(1, "rich", 300.0),
            review(1, "rich", BAD, 4),
            review(2, "rich", "It is okay I guess, a bit small.", 3),
            purchase(1, "poor", 20.0),
            review(1, "poor", BAD, 1),
        )
    )
    alerts = result.changes("negative_review")
    assert [(a.profile.user_id, a.review["event_id"]) for a in alerts] == [("rich", "rich-r1")]
    event = alert_event(alerts[0], 5)
    validate_output("negative_review", event)
    assert event["event_id"] == "rich:rich-r1:negative_review" and event["spend"] == 300.0
    assert event["score"] <= -0.6 and event["rating"] == 4
    assert "text" not in event and BAD not in orjson.dumps(event).decode()


async def test_a_valuable_tier_is_enough(scorer: SentimentScorer) -> None:
    store = MemoryStore()
    w = worker(store, scorer, min_spend=10_000.0)
    await w.process(recs(purchase(1, "a", 30.0)))
    profile = await store.get("a")
    assert profile is not None
    store.set_field("a", "cv", orjson.dumps({"tier": "champions"}))  # as the value feature wrote
    w.forget()
    result = await w.process(recs(review(1, "a", BAD_ZH, 3), start=1))
    assert [a.tier for a in result.changes("negative_review")] == ["champions"]


async def test_the_profile_event_carries_the_summary(scorer: SentimentScorer) -> None:
    store = MemoryStore()
    w = worker(store, scorer)
    result = await w.process(recs(review(1, "a", BAD, 5)))
    (profile,) = result.updated
    event = profile_updated(profile, 1, now_ms=2, features=w.features)
    validate_output("profile_updated", event)
    assert event["sentiment"]["reviews"] == 1
    assert event["sentiment"]["disagreement"]["high_stars_negative_text"] == 1


async def test_erasure_removes_the_state_and_pending_alerts(scorer: SentimentScorer) -> None:
    store = MemoryStore()
    w = worker(store, scorer)
    await w.process(recs(review(1, "a", BAD, 2)))
    assert store.field("a", "sn") is not None
    result = await w.process(
        recs(purchase(1, "a", 900.0), review(2, "a", BAD, 2), erase(9, "a"), start=1)
    )
    assert result.erased == ["a"]
    assert store.field("a", "sn") is None
    assert result.changes("negative_review") == []


async def test_many_reviews_are_scored_in_a_thread_with_the_same_result(
    scorer: SentimentScorer,
) -> None:
    texts = [f"{GOOD} #{i}" if i % 2 else f"{BAD} #{i}" for i in range(40)]
    assert sum(map(len, texts)) > THREAD_CHARS
    store = MemoryStore()
    result = await worker(store, scorer).process(
        recs(*(review(i, f"u{i}", t, 3) for i, t in enumerate(texts)))
    )
    assert result.counts["reviews_scored"] == len(texts)
    for i, text in enumerate(texts):
        state = orjson.loads(store.field(f"u{i}", "sn") or b"null")
        assert state["last_score"] == round(scorer.score(text), 4)


async def test_a_stale_worker_after_a_rebalance_neither_alerts_nor_counts_again(
    scorer: SentimentScorer,
) -> None:
    store = MemoryStore()
    first, second = worker(store, scorer), worker(store, scorer)
    await first.process(recs(purchase(1, "a", 900.0)))
    # Another worker takes the user over and applies the review (and alerts once).
    taken = await second.process(recs(review(1, "a", BAD, 5), start=1))
    assert len(taken.changes("negative_review")) == 1
    state, item = store.field("a", "sn"), product(store, "p1")
    # The old owner, from its stale copy, gets the same review: its write conflicts, the
    # retry from the reloaded profile finds the offset fenced.
    result = await first.process(recs(review(1, "a", BAD, 5), start=1))
    assert result.conflicts == 1 and result.applied == 0
    assert result.changes("negative_review") == []
    assert store.field("a", "sn") == state and product(store, "p1") == item
    assert orjson.loads(state or b"null")["reviews"] == 1
