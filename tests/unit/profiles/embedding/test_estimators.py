"""Property tests for the online embedding-profile estimators (profiles.embedding.estimators)."""

from __future__ import annotations

import doctest
import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import profiles.embedding.cache
import profiles.embedding.estimators
from profiles.embedding.estimators import DecayedMean, Interests

DIM = 6
FIFTY_YEARS_MS = 50 * 365 * 24 * 3600 * 1000
PROPS = settings(max_examples=150, deadline=None)

half_lives = st.floats(min_value=1.0, max_value=365 * 24 * 3600 * 1000.0)
weights = st.floats(min_value=0.01, max_value=100.0)
timestamps = st.integers(min_value=0, max_value=FIFTY_YEARS_MS)
# Positive components keep every mean well away from zero, where normalising would amplify
# rounding: permutation tests compare directions, not the conditioning of the data.
positive_vecs = st.lists(st.floats(min_value=0.05, max_value=1.0), min_size=DIM, max_size=DIM)
any_vecs = st.lists(st.floats(min_value=-1.0, max_value=1.0), min_size=DIM, max_size=DIM).filter(
    lambda v: math.hypot(*v) > 1e-3
)
tag_lists = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"]),
        st.floats(min_value=0.0, max_value=1.0),
    ),
    max_size=4,
)


def events(
    vecs: st.SearchStrategy[list[float]], max_size: int = 25
) -> st.SearchStrategy[list[tuple[list[float], float, int]]]:
    return st.lists(st.tuples(vecs, weights, timestamps), min_size=1, max_size=max_size)


def dumps(obj: DecayedMean | Interests) -> str:
    return json.dumps(obj.to_dict(), sort_keys=True, allow_nan=False)


def feed_mean(h: float, evs: list[tuple[list[float], float, int]]) -> DecayedMean:
    m = DecayedMean(h)
    for vec, w, ts in evs:
        m.learn_one(vec, w, ts)
    return m


def reference_mean(h: float, evs: list[tuple[list[float], float, int]]) -> np.ndarray:
    t_ref = max(ts for _, _, ts in evs)
    total = np.zeros(DIM)
    for vec, w, ts in evs:
        u = np.asarray(vec) / np.linalg.norm(vec)
        total += w * 2.0 ** (-(t_ref - ts) / h) * u
    return total / np.linalg.norm(total)


@PROPS
@given(h=half_lives, evs=events(any_vecs), tags=st.lists(tag_lists, min_size=25, max_size=25))
def test_same_events_same_order_give_identical_bytes(
    h: float, evs: list[tuple[list[float], float, int]], tags: list[list[tuple[str, float]]]
) -> None:
    assert dumps(feed_mean(h, evs)) == dumps(feed_mean(h, evs))
    a, b = Interests(h, k_max=3), Interests(h, k_max=3)
    for it in (a, b):
        for (vec, w, ts), tg in zip(evs, tags, strict=False):
            it.learn_one(vec, w, ts, tg)
    assert dumps(a) == dumps(b)


@PROPS
@given(h=half_lives, evs=events(positive_vecs), seed=st.integers(0, 2**32 - 1))
def test_decayed_mean_is_order_independent(
    h: float, evs: list[tuple[list[float], float, int]], seed: int
) -> None:
    shuffled = list(evs)
    np.random.default_rng(seed).shuffle(shuffled)
    a, b = feed_mean(h, evs), feed_mean(h, shuffled)
    va, vb = a.vector(), b.vector()
    assert va is not None and vb is not None
    np.testing.assert_allclose(va, vb, atol=1e-6)
    assert a.ts == b.ts == max(ts for _, _, ts in evs)
    assert math.isclose(a.weight(), b.weight(), rel_tol=1e-9)


@PROPS
@given(h=half_lives, evs=events(positive_vecs))
def test_decayed_mean_matches_direct_sum_at_latest_time(
    h: float, evs: list[tuple[list[float], float, int]]
) -> None:
    v = feed_mean(h, evs).vector()
    assert v is not None
    np.testing.assert_allclose(v, reference_mean(h, evs), atol=1e-6)


@PROPS
@given(
    h=half_lives,
    evs=events(any_vecs),
    steps=st.lists(st.integers(0, FIFTY_YEARS_MS), min_size=1, max_size=10),
)
def test_decay_is_monotone_as_time_advances(
    h: float, evs: list[tuple[list[float], float, int]], steps: list[int]
) -> None:
    m = feed_mean(h, evs)
    it = Interests(h)
    for vec, w, ts in evs:
        it.learn_one(vec, w, ts)
    assert m.ts is not None
    direction = m.vector()
    times = np.cumsum([m.ts, *steps]).tolist()
    read = [m.weight(t) for t in times]
    assert all(later <= earlier for earlier, later in itertools.pairwise(read))
    per_time = [sum(i.weight for i in it.interests(t)) for t in times]
    assert all(later <= earlier * (1 + 1e-12) for earlier, later in itertools.pairwise(per_time))
    # Moving the clock with weightless events decays the state the same way.
    previous = m.weight()
    for t in times[1:]:
        m.learn_one(np.ones(DIM), 0.0, t)
        assert m.weight() <= previous
        previous = m.weight()
        now = m.vector()
        if direction is not None and now is not None:
            np.testing.assert_allclose(now, direction, atol=1e-6)


@PROPS
@given(
    h=st.floats(min_value=1.0, max_value=1e13),
    evs=events(any_vecs, max_size=40),
    tags=st.lists(tag_lists, min_size=40, max_size=40),
    k_max=st.integers(1, 6),
    threshold=st.floats(-1.0, 1.0),
)
def test_state_stays_finite_bounded_and_unit_over_fifty_years(
    h: float,
    evs: list[tuple[list[float], float, int]],
    tags: list[list[tuple[str, float]]],
    k_max: int,
    threshold: float,
) -> None:
    m = feed_mean(h, evs)
    it = Interests(h, k_max=k_max, join_threshold=threshold, max_tags=3)
    for (vec, w, ts), tg in zip(evs, tags, strict=False):
        it.learn_one(vec, w, ts, tg)
        assert len(it) <= k_max
    assert math.isfinite(m.weight()) and m.weight() >= 0
    v = m.vector()
    assert v is None or abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    found = it.interests()
    assert 1 <= len(found) <= k_max
    assert [i.weight for i in found] == sorted((i.weight for i in found), reverse=True)
    for interest in found:
        assert math.isfinite(interest.weight) and interest.weight > 0
        assert abs(float(np.linalg.norm(interest.vector)) - 1.0) < 1e-5
        assert len(interest.tags) <= 3
        assert all(math.isfinite(w) and w > 0 for _, w in interest.tags)
    assert sum(i.events for i in found) <= len(evs)
    dumps(m), dumps(it)  # allow_nan=False: nothing non-finite reaches storage


@PROPS
@given(h=half_lives, evs=events(any_vecs), tags=st.lists(tag_lists, min_size=25, max_size=25))
def test_serialisation_round_trips(
    h: float, evs: list[tuple[list[float], float, int]], tags: list[list[tuple[str, float]]]
) -> None:
    m = feed_mean(h, evs)
    it = Interests(h, k_max=4)
    for (vec, w, ts), tg in zip(evs, tags, strict=False):
        it.learn_one(vec, w, ts, tg)
    m2 = DecayedMean.from_dict(json.loads(dumps(m)))
    it2 = Interests.from_dict(json.loads(dumps(it)))
    assert dumps(m2) == dumps(m)
    assert dumps(it2) == dumps(it)
    v, v2 = m.vector(), m2.vector()
    assert (v is None) == (v2 is None)
    if v is not None and v2 is not None:
        np.testing.assert_allclose(v, v2, atol=1e-6)


@PROPS
@given(h=half_lives, evs=events(positive_vecs))
def test_one_catch_all_interest_is_the_decayed_mean(
    h: float, evs: list[tuple[list[float], float, int]]
) -> None:
    it = Interests(h, k_max=1, join_threshold=-1.0)
    for vec, w, ts in evs:
        it.learn_one(vec, w, ts)
    (only,) = it.interests()
    m = feed_mean(h, evs)
    mv = m.vector()
    assert mv is not None
    np.testing.assert_allclose(only.vector, mv, atol=1e-6)
    assert math.isclose(only.weight, m.weight(), rel_tol=1e-9)
    span = max(ts for _, _, ts in evs) - min(ts for _, _, ts in evs)
    if span / h < 1000:  # past ~2^-1074 old events underflow away and the count restarts
        assert only.events == len(evs)


def test_late_event_is_decayed_not_the_state() -> None:
    m = DecayedMean(half_life_ms=1000)
    m.learn_one([0.0, 1.0], 1.0, ts=5000)
    m.learn_one([1.0, 0.0], 1.0, ts=4000)  # one half-life late: counts 0.5
    assert m.ts == 5000
    assert m.weight() == pytest.approx(1.5)
    v = m.vector()
    assert v is not None
    np.testing.assert_allclose(v, np.array([0.5, 1.0]) / math.hypot(0.5, 1.0), atol=1e-7)


def test_interests_split_join_and_drop_the_weakest() -> None:
    it = Interests(half_life_ms=1e9, k_max=2, join_threshold=0.5)
    shoes, tea, phone = np.eye(3)
    it.learn_one(shoes, 1.0, 0, [("shoes", 1.0)])
    it.learn_one(shoes + 0.1 * tea, 1.0, 1, [("shoes", 1.0), ("red", 1.0)])
    it.learn_one(tea, 0.5, 2, [("tea", 1.0)])
    assert [i.events for i in it.interests()] == [2, 1]
    it.learn_one(phone, 2.0, 3, [("phone", 1.0)])
    names = [i.tags[0][0] for i in it.interests()]
    assert names == ["phone", "shoes"]  # tea had the lowest weight


def test_interests_merge_when_centroids_converge() -> None:
    it = Interests(half_life_ms=1e12, k_max=5, join_threshold=0.7)
    a = np.array([1.0, 0.0])
    b = np.array([math.cos(1.0), math.sin(1.0)])  # cos 0.54 < 0.7: two interests
    it.learn_one(a, 1.0, 0)
    it.learn_one(b, 1.0, 0)
    assert len(it) == 2
    # Halfway between: joins the first, whose centroid then sits within 0.7 of the second.
    it.learn_one(a + b, 5.0, 0)
    assert len(it) == 1
    assert it.interests()[0].events == 3


def test_top_tags_are_bounded_and_ordered() -> None:
    it = Interests(half_life_ms=1e9, max_tags=2)
    it.learn_one([1.0, 0.0], 1.0, 0, [("a", 0.1), ("b", 0.5), ("c", 0.9)])
    it.learn_one([1.0, 0.0], 1.0, 0, [("a", 1.0)])
    tags = it.interests()[0].tags
    assert [t for t, _ in tags] == ["a", "c"]
    np.testing.assert_allclose([w for _, w in tags], [1.0, 0.9])


@pytest.mark.parametrize(
    ("vec", "weight"),
    [([0.0, 0.0], 1.0), ([1.0, math.nan], 1.0), ([1.0, 0.0], -1.0), ([1.0, 0.0], math.inf)],
)
def test_bad_inputs_are_rejected(vec: list[float], weight: float) -> None:
    with pytest.raises(ValueError):
        DecayedMean(1000).learn_one(vec, weight, 0)
    with pytest.raises(ValueError):
        Interests(1000).learn_one(vec, weight, 0)


def test_dimension_mismatch_is_rejected_without_touching_state() -> None:
    m, it = DecayedMean(1000), Interests(1000)
    m.learn_one([1.0, 0.0], 1.0, 0)
    it.learn_one([1.0, 0.0], 1.0, 0)
    with pytest.raises(ValueError):
        m.learn_one([1.0, 0.0, 0.0], 1.0, 10_000)
    with pytest.raises(ValueError):
        it.learn_one([1.0, 0.0, 0.0], 1.0, 10_000)
    assert m.ts == 0 and it.ts == 0


@pytest.mark.parametrize("module", [profiles.embedding.estimators, profiles.embedding.cache])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
