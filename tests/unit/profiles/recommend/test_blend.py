"""recommend(): exclusion, cold start, diversity, determinism, tags-only finds, properties."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.recommend.blend import BlendConfig, Recommendation, quotas, recommend
from profiles.recommend.index import ItemIndex
from tests.unit.profiles.recommend.util import DIM, axis, index_of, item, near, unit

PERSONAL = 100  # an event count well above min_events_for_personal


def pids(recs: list[Recommendation]) -> list[str]:
    return [r.product_id for r in recs]


def two_clusters(n: int = 15) -> ItemIndex:
    """``n`` near-duplicates around axis 0 ("shoes") and ``n`` looser ones around axis 1
    ("tea"): every shoe is closer to its interest than any tea item is to its own."""
    items = [item(f"s{i:02d}", near(0, 2 + i % 5, 0.02 * i), {"shoes"}) for i in range(n)]
    items += [item(f"t{i:02d}", near(1, 2 + i % 5, 0.5 + 0.02 * i), {"tea"}) for i in range(n)]
    return index_of(items)


def test_purchased_items_are_excluded_even_when_nearest() -> None:
    idx = index_of([item("bought", axis(0), {"tea"}), item("other", near(0, 1, 0.3), {"tea"})])
    recs = recommend(
        idx, axis(0), [], [("tea", 1.0)], {"bought"}, BlendConfig(k=5), events=PERSONAL
    )
    assert pids(recs) == ["other"]


def test_discontinued_items_are_never_recommended() -> None:
    idx = index_of([item("gone", axis(0), {"tea"}), item("ok", near(0, 1, 0.5), {"tea"})])
    idx.record("gone", 10.0, ts=0)
    idx.upsert(item("gone", axis(0), {"tea"}, discontinued=True))
    for events in (PERSONAL, 0):  # personal and cold start
        recs = recommend(idx, axis(0), [], [("tea", 1.0)], (), BlendConfig(k=5), events=events)
        assert "gone" not in pids(recs)


def test_cold_start_uses_segment_popularity_then_global() -> None:
    idx = index_of([item(p, axis(i)) for i, p in enumerate(["a", "b", "c", "d", "e"])])
    for pid, w in [("a", 5.0), ("b", 4.0), ("c", 3.0), ("d", 2.0)]:
        idx.record(pid, w, ts=0)
    cfg = BlendConfig(k=4)
    # Too few events: popularity, even though the user has a vector.
    recs = recommend(idx, axis(4), [], [("x", 1.0)], {"b"}, cfg, ["d", "zzz", "b", "c"], events=2)
    # Segment order (minus unknown and bought ids), then global; "e" was never popular.
    assert pids(recs) == ["d", "c", "a"]
    assert [r.reason["scope"] for r in recs] == ["segment", "segment", "global"]
    assert all(r.reason["source"] == "popularity" for r in recs)
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    # No segment list: global popularity.
    recs = recommend(idx, None, [], [], (), cfg)
    assert pids(recs) == ["a", "b", "c", "d"]
    assert {r.reason["scope"] for r in recs} == {"global"}


def test_no_vector_and_no_tags_is_cold_start() -> None:
    idx = index_of([item("a", axis(0), {"tea"}), item("b", axis(1))])
    idx.record("b", 1.0, ts=0)
    recs = recommend(idx, None, [], [], (), BlendConfig(k=3), events=PERSONAL)
    assert pids(recs) == ["b"] and recs[0].reason["source"] == "popularity"


def test_enough_events_is_personal() -> None:
    idx = index_of([item("a", axis(0)), item("b", axis(1))])
    idx.record("b", 1.0, ts=0)
    cfg = BlendConfig(k=1, min_events_for_personal=3)
    assert pids(recommend(idx, axis(0), [], [], (), cfg, events=3)) == ["a"]
    assert pids(recommend(idx, axis(0), [], [], (), cfg, events=2)) == ["b"]


def test_tags_find_items_the_vectors_miss() -> None:
    near_items = [item(f"v{i}", near(0, 1, 0.05 * i)) for i in range(5)]
    far_match = item("tagged", axis(3), {"espresso", "grinder"})
    idx = index_of([*near_items, far_match])
    cfg = BlendConfig(k=3, per_interest=2)  # the vector search alone never reaches "tagged"
    user_tags = [("espresso", 1.0), ("grinder", 0.5)]
    recs = recommend(idx, axis(0), [], user_tags, (), cfg, events=PERSONAL)
    assert "tagged" in pids(recs)
    tagged = next(r for r in recs if r.product_id == "tagged")
    assert tagged.reason["source"] == "tags"
    assert tagged.reason["shared_tags"] == ["espresso", "grinder"]
    assert tagged.reason["tag_jaccard"] == 1.0
    # With the tag weight at 0 tags bring no candidates: vector-only.
    vec_only = BlendConfig(k=3, per_interest=2, w_vector=1.0, w_tags=0.0, w_popularity=0.0)
    assert "tagged" not in pids(recommend(idx, axis(0), [], user_tags, (), vec_only))


def test_both_interests_are_represented_in_the_top_10() -> None:
    idx = two_clusters()
    interests = [(axis(0), 0.8, ["shoes"]), (axis(1), 0.2, ["tea"])]
    recs = recommend(
        idx,
        unit(0.8 * axis(0) + 0.2 * axis(1)),
        interests,
        [("shoes", 1.0), ("tea", 0.3)],
        (),
        BlendConfig(),
        events=PERSONAL,
    )
    got = pids(recs)
    assert len(got) == 10
    shoes, tea = sum(p.startswith("s") for p in got), sum(p.startswith("t") for p in got)
    assert shoes >= 1 and tea >= 1
    assert shoes > tea  # the stronger interest keeps more slots
    assert {r.reason["interest"] for r in recs} == {0, 1}
    # Without diversity the closer cluster takes every slot: the quota is what made room.
    plain = recommend(
        idx,
        unit(0.8 * axis(0) + 0.2 * axis(1)),
        interests,
        [("shoes", 1.0), ("tea", 0.3)],
        (),
        BlendConfig(diversity=0.0),
        events=PERSONAL,
    )
    assert all(p.startswith("s") for p in pids(plain))


def test_mmr_prefers_a_different_item_over_a_near_copy() -> None:
    idx = index_of(
        [
            item("orig", axis(0)),
            item("copy", near(0, 1, 0.01)),
            item("variant", near(0, 2, 0.9)),
        ]
    )
    cfg = BlendConfig(k=2, w_vector=1.0, w_tags=0.0, w_popularity=0.0, diversity=0.9)
    assert set(pids(recommend(idx, axis(0), [], [], (), cfg))) == {"orig", "variant"}
    no_div = BlendConfig(k=2, w_vector=1.0, w_tags=0.0, w_popularity=0.0, diversity=0.0)
    assert pids(recommend(idx, axis(0), [], [], (), no_div)) == ["orig", "copy"]


def test_same_inputs_same_list() -> None:
    def run(idx: ItemIndex) -> list[tuple[str, float]]:
        interests = [(axis(0), 0.6, ["shoes"]), (axis(1), 0.4, ["tea"])]
        recs = recommend(
            idx,
            unit(axis(0) + axis(1)),
            interests,
            [("shoes", 1.0), ("tea", 1.0)],
            {"s03"},
            BlendConfig(),
            events=PERSONAL,
        )
        return [(r.product_id, r.score) for r in recs]

    first = run(two_clusters())
    assert run(two_clusters()) == first
    idx = two_clusters()
    assert run(idx) == run(idx)


def test_small_catalog_is_filled_with_popular_items_after_the_personal_ones() -> None:
    idx = index_of([item("a", axis(0), {"tea"}), item("b", axis(1), {"pen"})])
    idx.record("b", 1.0, ts=0)
    cfg = BlendConfig(k=5, per_interest=1, w_vector=0.0, w_tags=1.0, w_popularity=0.0)
    recs = recommend(idx, None, [], [("tea", 1.0)], (), cfg, events=PERSONAL)
    assert pids(recs) == ["a", "b"]
    assert recs[1].reason["source"] == "popularity"
    assert recs[0].score >= recs[1].score


def test_blended_score_is_the_weighted_sum_of_the_parts() -> None:
    idx = index_of([item("a", near(0, 1, 0.5), {"tea", "pot"}), item("b", axis(2))])
    idx.record("a", 1.0, ts=0)
    cfg = BlendConfig(k=1)
    [rec] = recommend(idx, axis(0), [], [("tea", 1.0)], (), cfg, events=PERSONAL)
    r = rec.reason
    assert r["cosine"] == pytest.approx(1 / np.sqrt(1.25), abs=1e-4)
    assert r["tag_jaccard"] == 0.5 and r["popularity"] == 1.0
    want = cfg.w_vector * r["cosine"] + cfg.w_tags * 0.5 + cfg.w_popularity * 1.0
    assert rec.score == pytest.approx(want, abs=1e-4)


def test_zero_k_and_invalid_configs() -> None:
    assert recommend(two_clusters(), axis(0), [], [], (), BlendConfig(k=0)) == []
    with pytest.raises(ValueError):
        BlendConfig(diversity=1.5)
    with pytest.raises(ValueError):
        BlendConfig(w_tags=-0.1)


def test_quotas_sum_to_k_and_give_every_interest_a_slot() -> None:
    for weights in ([0.97, 0.01, 0.01, 0.01], [0.5, 0.5], [1.0], [0.0, 0.0, 1.0]):
        q = quotas(weights, 10, 0.3)
        assert sum(q) == 10 and min(q) >= 1
    assert quotas([0.5, 0.5], 10, 0.0) == [5, 5]
    assert quotas([], 10, 0.3) == []


# ----------------------------------------------------------------------------- properties


@st.composite
def worlds(draw: st.DrawFn) -> tuple[ItemIndex, dict[str, Any], set[str], set[str]]:
    n = draw(st.integers(1, 30))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    vocab = [f"t{i}" for i in range(8)]
    idx = ItemIndex(DIM, capacity=draw(st.integers(1, 8)))
    discontinued: set[str] = set()
    for i in range(n):
        tags = {t for t in vocab if rng.random() < 0.3}
        vec = unit(rng.standard_normal(DIM) + 1e-3)
        idx.upsert(item(f"p{i:02d}", vec, tags, ("A", f"B{i % 3}")))
        if rng.random() < 0.3:
            idx.record(f"p{i:02d}", float(rng.integers(1, 5)), ts=int(rng.integers(0, 10**9)))
    for i in range(n):
        if draw(st.booleans()) and rng.random() < 0.3:
            idx.upsert(item(f"p{i:02d}", axis(0), discontinued=True))
            discontinued.add(f"p{i:02d}")
    purchased = {f"p{i:02d}" for i in range(n + 3) if rng.random() < 0.2}
    n_interests = draw(st.integers(0, 4))
    user = {
        "long_term": unit(rng.standard_normal(DIM)) if draw(st.booleans()) else None,
        "interests": [
            (unit(rng.standard_normal(DIM)), float(rng.random()), [vocab[j]])
            for j in range(n_interests)
        ],
        "user_tags": [(t, float(rng.random())) for t in vocab if rng.random() < 0.4],
        "segment": [f"p{int(j):02d}" for j in rng.integers(0, n + 3, size=3)],
        "events": draw(st.sampled_from([None, 0, 2, 50])),
        "cfg": BlendConfig(
            k=draw(st.integers(1, 12)),
            per_interest=draw(st.integers(1, 10)),
            w_vector=draw(st.sampled_from([0.0, 0.6, 1.0])),
            w_tags=draw(st.sampled_from([0.0, 0.3])),
            w_popularity=draw(st.sampled_from([0.0, 0.1])),
            diversity=draw(st.sampled_from([0.0, 0.3, 1.0])),
        ),
    }
    return idx, user, purchased, discontinued


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_results_never_hold_excluded_or_discontinued_ids_and_are_sorted(
    world: tuple[ItemIndex, dict[str, Any], set[str], set[str]],
) -> None:
    idx, user, purchased, discontinued = world
    cfg = user["cfg"]
    recs = recommend(
        idx,
        user["long_term"],
        user["interests"],
        user["user_tags"],
        purchased,
        cfg,
        user["segment"],
        events=user["events"],
    )
    got = pids(recs)
    assert len(got) == len(set(got)) <= cfg.k
    assert not set(got) & purchased
    assert not set(got) & discontinued
    assert all(p in idx for p in got)
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    again = recommend(
        idx,
        user["long_term"],
        user["interests"],
        user["user_tags"],
        purchased,
        cfg,
        user["segment"],
        events=user["events"],
    )
    assert [(r.product_id, r.score) for r in again] == [(r.product_id, r.score) for r in recs]
