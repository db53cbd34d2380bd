"""Recommendations through the batch updater: when lists are made, what they hold, what is kept."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile
from profiles.embedding.text import item_text
from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.recommend.blend import BlendConfig, recommend
from profiles.recommend.feature import recommendation_event
from profiles.recommend.index import Item, ItemIndex
from profiles.recommend.popularity import FencedCounts, split_fields
from profiles.recommend.recommender import Recommender, RecsConfig
from schemas.validate import validate_output
from tests.unit.profiles.pipeline.test_updater import Words, click, erase
from tests.unit.profiles.pipeline.test_updater_embeddings import HashEncoder, embedder

CFG = ProfileConfig()
MIN = 60_000
CATALOG = {
    "tea": ("Green Tea", ["Food", "Tea"]),
    "pot": ("Tea Pot", ["Home", "Tea"]),
    "cup": ("Tea Cup", ["Home", "Tea"]),
    "pen": ("Ink Pen", ["Office"]),
    "pad": ("Note Pad", ["Office"]),
}


def build(interval_ms: int = 10 * MIN) -> tuple[BatchUpdater, MemoryStore, Recommender]:
    enc, store = HashEncoder(), MemoryStore()
    emb = embedder(enc)
    index = ItemIndex(enc.dim)
    vectors = enc.encode([item_text(t, c) for t, c in CATALOG.values()])
    for (pid, (title, cat)), vec in zip(CATALOG.items(), vectors, strict=True):
        tags = frozenset(w for w, _ in Words().text(title)) | {cat[-1].lower()}
        index.upsert(Item(pid, vec, tags, tuple(cat), 1.0))
    rec = Recommender(
        index, RecsConfig(BlendConfig(k=3), interval_ms, 0.1), CFG.half_life_ms, emb.config
    )
    features = builtin_features(partitions=2, embedder=emb, recommender=rec, config=CFG)
    up = BatchUpdater(store, CFG, Words(), features, clock=lambda: 1.0)
    return up, store, rec


def see(n: int, user: str, pid: str, ts: int) -> dict[str, Any]:
    title, cat = CATALOG[pid]
    return click(n, user, ts=ts, product_id=pid, title=title, category=cat)


def buy(n: int, user: str, pid: str, ts: int) -> dict[str, Any]:
    title, cat = CATALOG[pid]
    line = {"product_id": pid, "quantity": 1, "price": 5.0, "title": title, "category": cat}
    return {
        "event_id": f"e{n}",
        "type": "purchase",
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
        "order_id": f"o{n}",
        "currency": "CNY",
        "amount": 5.0,
        "items": [line],
    }


def recs(*events: dict[str, Any], start: int = 0) -> list[Record]:
    return [Record(InputPartition("in", 0), start + i, e) for i, e in enumerate(events)]


async def test_cold_users_get_popularity_on_pull_and_a_first_push_once_personal() -> None:
    up, store, rec = build()
    rec.index.record("pen", 5.0, ts=0)
    rec.index.record("pad", 1.0, ts=0)
    cold = await up.process(recs(see(1, "u", "tea", MIN), see(2, "u", "tea", MIN + 1)))
    assert cold.recommendations == []  # cold: nothing pushed
    profile = await store.get("u")
    assert profile is not None
    pulled = rec.compute(profile)
    assert [r.product_id for r in pulled][:2] == ["pen", "pad"]
    assert {r.reason["source"] for r in pulled} == {"popularity"}
    third = await up.process(recs(see(3, "u", "tea", MIN + 2), start=2))
    (change,) = third.recommendations
    assert change.trigger == "first"
    assert change.items[0].reason["source"] != "popularity"
    event = recommendation_event(change, "hash-a", now_ms=2 * MIN)
    validate_output("recommendation", event)
    assert event["event_id"] == "u:2:recs"


async def test_lists_are_throttled_and_a_purchase_leaves_the_list() -> None:
    up, store, _ = build(interval_ms=10 * MIN)
    first = await up.process(recs(*(see(i, "u", "tea", i * MIN) for i in range(1, 4))))
    assert [c.trigger for c in first.recommendations] == ["first"]
    # Same interest, inside the interval: nothing new.
    quiet = await up.process(recs(see(4, "u", "tea", 5 * MIN), start=3))
    assert quiet.recommendations == []
    # A purchase inside the interval waits; the next event after the interval serves it.
    waiting = await up.process(recs(buy(5, "u", "pot", 6 * MIN), start=4))
    assert waiting.recommendations == []
    later = await up.process(recs(see(6, "u", "tea", 20 * MIN), start=5))
    (change,) = later.recommendations
    assert change.trigger == "purchase"
    listed = [r.product_id for r in change.items]
    assert "pot" not in listed and len(listed) == 3
    assert {"tea", "cup"} <= set(listed)  # the user's interest: tea things first
    state, vector = orjson.loads(store.field("u", "r") or b"{}"), store.field("u", "rv") or b""
    assert state["items"] == listed and state["ts"] == 20 * MIN and state["trigger"] == "purchase"
    assert len(vector) == 2 * 16  # float16 long-term vector


async def test_interest_shift_beyond_the_threshold_triggers_after_the_interval() -> None:
    up, _, _ = build(interval_ms=MIN)
    await up.process(recs(*(see(i, "u", "tea", i * MIN) for i in range(1, 4))))
    office = [see(10 + i, "u", p, (10 + i) * MIN) for i, p in enumerate(["pen", "pad"] * 6)]
    result = await up.process(recs(*office, start=10))
    (change,) = result.recommendations
    assert change.trigger == "interest_shift"
    assert {"pen", "pad"} <= {r.product_id for r in change.items}


async def test_popularity_is_counted_once_per_input_offset() -> None:
    up, store, _ = build()
    batch = recs(buy(1, "a", "tea", MIN), see(2, "b", "tea", MIN), see(3, "a", "pen", MIN))
    await up.process(batch)
    await up.process(batch)  # redelivered: profile fences and popularity fences both hold
    up.forget()
    await up.process(batch)  # and again from a cold cache (another worker, a restart)
    total = FencedCounts(CFG.half_life_ms)
    for counts in store.popularity.values():
        total.state.counts = {
            k: total.state.counts.get(k, 0.0) + v for k, v in counts.state.counts.items()
        }
    assert total.state.counts == pytest.approx({"p:tea": 5.0 + 1.0, "p:pen": 1.0})


async def test_interactions_count_for_the_users_segment_too() -> None:
    up, store, rec = build()
    searches = [
        {"event_id": f"q{u}", "type": "search", "schema_version": 1, "user_id": u, "ts": 0}
        | {"query": "ink"}
        for u in "abc"
    ]
    await up.process(recs(*searches))  # profiles exist, nothing counted (no item)
    up.forget()
    for user in "ab":  # as if the segmenter had placed them; "c": none
        store.set_field(user, "s", 2)
    batch = [buy(1, "a", "pen", MIN), see(2, "b", "pad", MIN), see(3, "c", "tea", MIN)]
    await up.process(recs(*batch, see(4, "c", "tea", MIN), start=3))
    counts: dict[str, float] = {}
    for part in store.popularity.values():
        for name, value in part.state.counts.items():
            counts[name] = counts.get(name, 0.0) + value
    assert counts == pytest.approx(
        {"p:pen": 5.0, "s2:pen": 5.0, "p:pad": 1.0, "s2:pad": 1.0, "p:tea": 2.0}
    )

    # A cold user of segment 2 gets segment 2's favourites first, then everyone's.
    everyone, segments = split_fields(counts)
    rec.index.load_popularity(everyone, anchor=MIN, latest=MIN)
    rec.index.load_segment_popularity(segments)
    newcomer = Profile("n", last_ts=MIN, counts={"click": 1})
    newcomer.segment = 2
    pulled = rec.compute(newcomer)
    assert [(r.product_id, r.reason["scope"]) for r in pulled] == [
        ("pen", "segment"),
        ("pad", "segment"),
        ("tea", "global"),
    ]
    # Without a segment (or in one nobody counted yet): everyone's list.
    for segment in (None, 5):
        newcomer.segment = segment
        assert [r.product_id for r in rec.compute(newcomer)] == ["pen", "tea", "pad"]
        assert {r.reason["scope"] for r in rec.compute(newcomer)} == {"global"}


async def test_erasure_removes_the_recommendation_state() -> None:
    up, store, _ = build()
    await up.process(recs(*(see(i, "u", "tea", i * MIN) for i in range(1, 4))))
    assert store.field("u", "r") is not None
    await up.process(recs(erase(4, "u"), start=3))
    assert store.field("u", "r") is None and "u" not in store.profiles


def test_pull_with_another_k_and_purchased_items_excluded() -> None:
    _, _, rec = build()
    profile = Profile("u", last_ts=MIN, counts={"click": 5}, purchased=["tea"])
    profile.embedding = EmbeddingProfile(rec.embedding)
    vec = rec.index.get("cup")
    assert vec is not None
    profile.embedding.learn_one(vec.vector, 1.0, MIN, [("cup", 1.0)])
    items = rec.compute(profile, k=4)
    assert len(items) == 4 and "tea" not in [r.product_id for r in items]
    assert items[0].product_id == "cup"
    assert np.isclose(items[0].reason["cosine"], 1.0, atol=1e-3)


def test_batched_searches_give_the_same_lists_as_one_search_per_user() -> None:
    rng = np.random.default_rng(3)
    dim = 16
    index = ItemIndex(dim)
    words = [f"w{i}" for i in range(30)]
    for i in range(300):
        tags = frozenset(rng.choice(words, 3).tolist())
        index.upsert(Item(f"p{i}", rng.standard_normal(dim), tags, (f"c{i % 7}",), 1.0))
        index.record(f"p{i}", float(rng.integers(1, 5)), ts=0)
    config = EmbeddingConfig("hash-a", dim)
    rec = Recommender(index, RecsConfig(BlendConfig(k=8)), CFG.half_life_ms, config)
    profiles = []
    for u in range(12):
        profile = Profile(f"u{u}", last_ts=MIN, counts={"click": int(rng.integers(1, 9))})
        profile.purchased = [f"p{j}" for j in rng.choice(300, int(rng.integers(0, 20)))]
        profile.tags = {w: float(rng.random()) for w in rng.choice(words, 5).tolist()}
        profile.tag_anchor = MIN
        profile.embedding = EmbeddingProfile(config)
        for t in range(int(rng.integers(1, 6))):
            profile.embedding.learn_one(rng.standard_normal(dim), 1.0, MIN + t, [("w1", 1.0)])
        profiles.append(profile)
    batched = rec.compute_batch(profiles)
    for profile, got in zip(profiles, batched, strict=True):
        emb = profile.embedding
        assert emb is not None
        one = recommend(
            index,
            emb.long_term(),
            [(i.vector, i.weight, [t for t, _ in i.tags]) for i in emb.interest_list()],
            profile.top_tags(40, CFG.half_life_ms),
            profile.purchased,
            BlendConfig(k=8),
            events=sum(profile.counts.values()),
        )
        assert [(r.product_id, round(r.score, 6)) for r in got] == [
            (r.product_id, round(r.score, 6)) for r in one
        ]
        assert not set(profile.purchased) & {r.product_id for r in got}


async def test_items_seen_in_tracking_events_join_the_catalog_until_catalogued() -> None:
    up, store, _ = build()
    mug = click(1, "u", ts=MIN, product_id="mug", title="Clay Mug", category=["Home", "Tea"])
    known = see(2, "u", "tea", MIN)  # in the index already: not re-announced
    await up.process(recs(mug, known))
    assert store.items["mug"]["seen_in"] == "click"
    assert store.items["mug"]["title"] == "Clay Mug"
    assert "tea" not in store.items
    product = {
        "event_id": "cat-mug",
        "type": "product",
        "schema_version": 1,
        "user_id": "catalog",
        "ts": 0,  # older than the click: a catalog entry still replaces a seen one
        "product_id": "mug",
        "title": "Handmade Clay Mug",
        "category": ["Home", "Tea"],
        "price": 9.0,
        "currency": "CNY",
    }
    await up.process(recs(product, start=2))
    assert store.items["mug"]["title"] == "Handmade Clay Mug"
    assert "seen_in" not in store.items["mug"]


async def test_an_empty_catalog_pushes_nothing_and_asks_again_later() -> None:
    up, store, rec = build()
    for pid in list(CATALOG):
        rec.index.remove(pid)
    first = await up.process(recs(*(see(i, "u", "tea", i * MIN) for i in range(1, 4))))
    assert first.recommendations == [] and store.field("u", "r") is None
    title, cat = CATALOG["pot"]
    vector = HashEncoder().encode([item_text(title, cat)])[0]
    rec.index.upsert(Item("pot", vector, frozenset(), tuple(cat), 1.0))
    later = await up.process(recs(see(4, "u", "tea", 4 * MIN), start=3))
    (change,) = later.recommendations
    assert change.trigger == "first" and [r.product_id for r in change.items] == ["pot"]


async def test_rtp_risk_exclude_leaves_flagged_users_without_lists() -> None:
    from profiles.risk.detector import RiskDetector

    enc, store = HashEncoder(), MemoryStore()
    emb = embedder(enc)
    index = ItemIndex(enc.dim)
    vectors = enc.encode([item_text(t, c) for t, c in CATALOG.values()])
    for (pid, (title, cat)), vec in zip(CATALOG.items(), vectors, strict=True):
        tags = frozenset(w for w, _ in Words().text(title)) | {cat[-1].lower()}
        index.upsert(Item(pid, vec, tags, tuple(cat), 1.0))
    rec = Recommender(index, RecsConfig(BlendConfig(k=3)), CFG.half_life_ms, emb.config)
    features = builtin_features(
        partitions=2,
        embedder=emb,
        recommender=rec,
        config=CFG,
        risk=RiskDetector(),
        exclude_flagged="high",
    )
    up = BatchUpdater(store, CFG, Words(), features, clock=lambda: 1.0)
    # A bot (45 clicks in 45 s: an open high-severity flag) and a person, same interest.
    bot = [see(i, "bot", "tea", MIN + i * 1000) for i in range(45)]
    person = [see(100 + i, "person", "tea", MIN + i * 20_000) for i in range(3)]
    result = await up.process(recs(*bot, *person))
    assert [c.rule for c in result.changes("risk_flag")] == ["bot_clicks"]
    assert [c.profile.user_id for c in result.recommendations] == ["person"]
    flagged = await store.get("bot")
    assert flagged is not None and flagged.recs is None  # nothing pushed, nothing remembered
