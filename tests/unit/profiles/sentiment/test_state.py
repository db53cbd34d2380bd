"""The user's decayed sentiment and the per-product counter fields."""

from __future__ import annotations

import itertools

import pytest

from profiles.recommend.popularity import FencedCounts
from profiles.sentiment.state import SentimentState, item_fields, item_summary

H = 1000
REVIEWS = [(-0.8, 5, 0), (0.6, 4, 1000), (0.9, 1, 2500), (-0.5, 2, 400)]


def fold(reviews: list[tuple[float, int, int]]) -> SentimentState:
    st = SentimentState.empty()
    for score, rating, ts in reviews:
        st.add(score, rating, ts, H, 0.3)
    return st


def test_the_decayed_mean_weighs_recent_reviews_more() -> None:
    st = fold(REVIEWS[:3])
    w = [2**-2.5, 2**-1.5, 1.0]
    expected = (-0.8 * w[0] + 0.6 * w[1] + 0.9 * w[2]) / sum(w)
    assert st.mean() == pytest.approx(expected)
    assert st.negative_share() == pytest.approx(w[0] / sum(w))
    assert (st.reviews, st.negative, st.positive, st.t) == (3, 1, 2, 2500)


def test_any_arrival_order_gives_the_same_state() -> None:
    states = [fold(list(order)) for order in itertools.permutations(REVIEWS)]
    for st in states:
        assert st.mean() == pytest.approx(states[0].mean(), rel=1e-12)
        assert st.negative_share() == pytest.approx(states[0].negative_share(), rel=1e-12)
        assert st.t == 2500 and st.reviews == 4


def test_disagreement_counts_text_against_stars() -> None:
    st = fold(REVIEWS)
    assert st.high_stars_negative_text == 1  # 5 stars, -0.8
    assert st.low_stars_positive_text == 1  # 1 star, +0.9
    # -0.5 with 2 stars agrees; +0.6 with 4 stars agrees.
    assert st.summary()["disagreement"] == {
        "high_stars_negative_text": 1,
        "low_stars_positive_text": 1,
    }


def test_a_huge_gap_decays_old_reviews_to_nothing_without_error() -> None:
    st = fold([(-1.0, 1, 0), (1.0, 5, 10**15)])
    assert st.mean() == pytest.approx(1.0)


@pytest.mark.parametrize("raw", [None, 3, "x", [], {"reviews": "many"}, {"unknown": 1}])
def test_malformed_stored_state_starts_afresh(raw: object) -> None:
    st = SentimentState.from_dict(raw)
    assert st.reviews == 0 and st.mean() is None


def test_state_round_trips() -> None:
    st = fold(REVIEWS)
    assert SentimentState.from_dict(st.to_dict()) == st


def test_product_counters_are_fenced_and_decayed() -> None:
    counts = FencedCounts(half_life_ms=H)
    entries = [("in:0", 1, 0, name, w) for name, w in item_fields("tea", -0.9, 0.3)] + [
        ("in:0", 2, 1000, name, w) for name, w in item_fields("tea", 0.5, 0.3)
    ]
    assert counts.add(entries) == 5
    assert counts.add(entries) == 0  # redelivered: nothing counted twice
    merged = {name: counts.decayed(name, 1000) for name in ("s:tea", "n:tea", "x:tea")}
    found = item_summary(merged, "tea")
    assert found is not None
    assert found["score"] == pytest.approx((-0.9 * 0.5 + 0.5) / 1.5, abs=1e-4)
    assert found["negative_share"] == pytest.approx(0.5 / 1.5, abs=1e-4)
    assert item_summary(merged, "coffee") is None
