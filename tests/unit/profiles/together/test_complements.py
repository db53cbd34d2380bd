"""Complements in the blend: candidates they add, the score and reason they carry, the
per-worker cache that feeds them, and the recommender wiring."""

from __future__ import annotations

from collections.abc import Sequence

from profiles.core.profile import Profile
from profiles.embedding.profile import EmbeddingConfig
from profiles.recommend.blend import BlendConfig, recommend
from profiles.recommend.feature import recommendation_event
from profiles.recommend.recommender import Recommender, RecsChange, RecsConfig
from profiles.together.complements import ComplementCache
from profiles.together.counts import PairCounts
from profiles.together.offline import OfflinePairs
from profiles.together.session import SessionConfig
from schemas.validate import validate_output
from tests.unit.profiles.recommend.util import axis, index_of, item, near

PERSONAL = 100
H = 10**12


def shop() -> list:
    # The user likes axis 0 (phones); the case is far from it in vector space and tags.
    return [
        item("phone", axis(0), {"phone"}),
        item("phone2", near(0, 1, 0.1), {"phone"}),
        item("phone3", near(0, 2, 0.2), {"phone"}),
        item("phone4", near(0, 3, 0.2), {"phone"}),
        item("phone5", near(0, 4, 0.2), {"phone"}),
        item("case", axis(5), {"case"}),
    ]


def test_a_complement_joins_the_candidates_with_its_reason() -> None:
    idx = index_of(shop())
    base = BlendConfig(k=3, diversity=0.0)
    plain = recommend(idx, axis(0), [], [], {"phone"}, base, events=PERSONAL)
    assert "case" not in [r.product_id for r in plain]
    paired = BlendConfig(k=3, diversity=0.0, w_together=1.0)
    recs = recommend(
        idx, axis(0), [], [], {"phone"}, paired, events=PERSONAL, complements=[("case", 1.0)]
    )
    by_id = {r.product_id: r for r in recs}
    assert "case" in by_id
    assert by_id["case"].reason["source"] == "together"
    assert by_id["case"].reason["together"] == 1.0
    # Off (weight 0): complements change nothing.
    same = recommend(
        idx, axis(0), [], [], {"phone"}, base, events=PERSONAL, complements=[("case", 1.0)]
    )
    assert [r.product_id for r in same] == [r.product_id for r in plain]
    # Bought or unknown complements are never recommended.
    recs = recommend(
        idx,
        axis(0),
        [],
        [],
        {"phone", "case"},
        paired,
        events=PERSONAL,
        complements=[("case", 1.0), ("nowhere", 1.0)],
    )
    assert {"case", "nowhere"}.isdisjoint(r.product_id for r in recs)


class OfflineReader:
    """The reader protocol over in-memory counts (the worker's reads, without Redis)."""

    def __init__(self, pairs: OfflinePairs, as_of: int) -> None:
        self.pairs, self.as_of, self.reads = pairs, as_of, 0

    async def bought(self, items: Sequence[str], limit: int) -> dict[str, dict[str, float]]:
        self.reads += len(items)
        return {p: self.pairs.neighbours(p, "b", self.as_of) for p in items}

    async def bought_marginals(self) -> PairCounts:
        return self.pairs.counts("b", self.as_of)


def sessions(pairs: OfflinePairs) -> None:
    n = 0
    for u in range(6):
        items = ["phone", "case"] if u < 4 else ["phone", "phone2"]
        event = {
            "event_id": f"e{u}",
            "type": "purchase",
            "user_id": f"u{u}",
            "session_id": "s",
            "ts": 0,
            "items": [{"product_id": p} for p in items],
        }
        pairs.add(event, n)
        n += 1
    for u in range(6, 12):  # phone2 is a best seller: bought with everything, alone too
        pairs.add(
            {
                "event_id": f"e{u}",
                "type": "purchase",
                "user_id": f"u{u}",
                "session_id": "s",
                "ts": 0,
                "items": [{"product_id": "phone2"}],
            },
            n,
        )
        n += 1


async def test_cache_reads_each_item_once_per_ttl_and_ranks_by_lift() -> None:
    pairs = OfflinePairs(SessionConfig(), H)
    sessions(pairs)
    reader = OfflineReader(pairs, 0)
    now = [0.0]
    cache = ComplementCache(reader, min_count=2.0, k=5, ttl_s=60.0, clock=lambda: now[0])
    assert cache.of(["phone"]) == []  # nothing read yet
    assert await cache.refresh(["phone", "phone"]) == 1
    assert await cache.refresh(["phone"]) == 0  # fresh in the cache
    assert cache.of(["phone"]) == [("case", 1.0), ("phone2", 0.25)]
    now[0] = 61.0
    assert await cache.refresh(["phone"]) == 1 and reader.reads == 2


async def test_recommender_blends_the_complements_of_the_last_purchase() -> None:
    pairs = OfflinePairs(SessionConfig(), H)
    sessions(pairs)
    cache = ComplementCache(OfflineReader(pairs, 0), min_count=2.0, k=5)
    await cache.refresh(["phone"])
    idx = index_of(shop())
    cfg = RecsConfig(BlendConfig(k=3, diversity=0.0, w_together=1.0))
    rec = Recommender(idx, cfg, H, EmbeddingConfig("m", 8), complements=cache)
    profile = Profile("u1", version=3, last_ts=5)
    profile.purchased = ["phone"]
    profile.counts = {"purchase": 5}
    profile.tags, profile.tag_anchor = {"phone": 1.0}, 5
    items = rec.compute(profile)
    assert "case" in [r.product_id for r in items]
    event = recommendation_event(RecsChange(profile, tuple(items), "purchase"), "m", now_ms=9)
    validate_output("recommendation", event)
