"""Behaviour features, the mergeable standardizer and clustering vectors."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record, apply
from profiles.segments.features import (
    BEHAVIOUR_FEATURES,
    DAY_MS,
    MAX_RECENCY_DAYS,
    FeatureConfig,
    Standardizer,
    behaviour_matrix,
    behaviour_vector,
    behaviour_vector_of,
    clustering_vectors,
    rfm_values,
)

PROPS = settings(max_examples=100, deadline=None)
FEATURE = {name: i for i, name in enumerate(BEHAVIOUR_FEATURES)}

rows = st.lists(
    st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3), min_size=0, max_size=30
).map(lambda r: np.array(r, dtype=np.float64).reshape(-1, 3))


def test_behaviour_vector_reads_the_stored_profile_json() -> None:
    stats = {
        "counts": {"click": 6, "add_to_cart": 2, "purchase": 1, "search": 1, "product": 99},
        "orders": 3,
        "spend_cents": {"CNY": 10_000, "USD": 1_000},
        "last_ts": 1_000,
        "last_purchase_ts": 0,
    }
    v = behaviour_vector(stats, as_of_ms=1_000 + 3 * DAY_MS)
    assert v.shape == (len(BEHAVIOUR_FEATURES),)
    assert v[FEATURE["log1p_recency_days"]] == pytest.approx(math.log1p(3.0))
    assert v[FEATURE["log1p_orders"]] == pytest.approx(math.log1p(3))
    # 100 CNY + 10 USD at the fixed 7.2
    assert v[FEATURE["log1p_spend"]] == pytest.approx(math.log1p(172.0))
    # Catalog upserts are not user behaviour: shares are over the five user kinds.
    assert v[FEATURE["share_click"]] == pytest.approx(0.6)
    assert v[FEATURE["share_review"]] == 0.0
    assert v[FEATURE["log1p_events"]] == pytest.approx(math.log1p(10))


def test_recency_is_clamped_and_missing_times_count_as_long_ago() -> None:
    future = behaviour_vector({"last_ts": 5 * DAY_MS}, as_of_ms=0)
    assert future[FEATURE["log1p_recency_days"]] == 0.0
    never = behaviour_vector({}, as_of_ms=0)
    assert never[FEATURE["log1p_recency_days"]] == pytest.approx(math.log1p(MAX_RECENCY_DAYS))
    assert rfm_values({}, 0) == {
        "recency_days": MAX_RECENCY_DAYS,
        "frequency": 0.0,
        "monetary": 0.0,
    }


def test_profile_dataclass_and_its_json_give_the_same_vector() -> None:
    profile = Profile("u1")
    events = [
        {"type": "click", "event_id": "e1", "user_id": "u1", "ts": 1_000, "product_id": "p1"},
        {
            "type": "purchase",
            "event_id": "e2",
            "user_id": "u1",
            "ts": 2_000,
            "order_id": "o1",
            "items": [{"product_id": "p1", "quantity": 2, "price": 9.5}],
            "amount": 19.0,
            "currency": "USD",
        },
    ]
    records = [Record(InputPartition("site-events", 0), i, e) for i, e in enumerate(events)]
    apply(profile, records, ProfileConfig(), lambda e: ())
    as_of = 2_000 + DAY_MS
    direct = behaviour_vector_of(profile, as_of)
    stored = behaviour_vector(orjson.loads(profile.to_bytes()), as_of)
    np.testing.assert_array_equal(direct, stored)
    assert direct[FEATURE["log1p_spend"]] == pytest.approx(math.log1p(19.0 * 7.2))
    assert behaviour_matrix([orjson.loads(profile.to_bytes())] * 2, as_of).shape == (2, 9)


@PROPS
@given(rows, rows, rows)
def test_standardizer_merge_equals_one_pass(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    parts = []
    for X in (a, b, c):
        s = Standardizer(3)
        s.learn_many(X)
        parts.append(s)
    whole = Standardizer(3)
    whole.learn_many(np.vstack([a, b, c]))
    for merged in (
        parts[0].merge(parts[1]).merge(parts[2]),
        parts[2].merge(parts[0].merge(parts[1])),
    ):
        assert merged.n == whole.n
        np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-9, atol=1e-6)


@PROPS
@given(rows)
def test_standardizer_learn_many_in_pieces_equals_once(X: np.ndarray) -> None:
    once, pieces = Standardizer(3), Standardizer(3)
    once.learn_many(X)
    for row in X:
        pieces.learn_many(row[None, :])
    np.testing.assert_allclose(pieces.mean, once.mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pieces.var, once.var, rtol=1e-7, atol=1e-6)
    if len(X):
        np.testing.assert_allclose(once.mean, X.mean(axis=0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(once.var, X.var(axis=0), rtol=1e-7, atol=1e-6)


@PROPS
@given(rows)
def test_standardizer_round_trips_through_json(X: np.ndarray) -> None:
    s = Standardizer(3)
    s.learn_many(X)
    back = Standardizer.from_dict(orjson.loads(orjson.dumps(s.to_dict())))
    assert back.n == s.n
    np.testing.assert_array_equal(back.mean, s.mean)
    np.testing.assert_array_equal(back.m2, s.m2)


def test_standardizer_transform_and_guards() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal([1.0, -5.0, 3.0], [2.0, 0.5, 0.0], size=(500, 3))
    s = Standardizer(3)
    assert np.array_equal(s.transform(X), X)  # nothing learnt: identity
    s.learn_many(X)
    Z = s.transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0)[:2], 1.0, rtol=1e-12)
    assert np.all(Z[:, 2] == 0.0)  # constant feature: centred, not blown up
    with pytest.raises(ValueError):
        s.learn_many(np.ones((2, 4)))
    with pytest.raises(ValueError):
        s.learn_many(np.array([[np.nan, 0.0, 0.0]]))
    with pytest.raises(ValueError):
        s.merge(Standardizer(2))


def test_clustering_vectors_weight_each_block_to_unit_expected_norm() -> None:
    rng = np.random.default_rng(1)
    n, d = 4000, 16
    B = rng.normal(size=(n, len(BEHAVIOUR_FEATURES))) * 3.0 + 7.0
    E = rng.normal(size=(n, d))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    E[:10] = 0.0  # users without an embedding yet
    std = Standardizer()
    std.learn_many(B)
    cfg = FeatureConfig(embedding_weight=2.0, behaviour_weight=0.5, clip_sigma=100.0)
    V = clustering_vectors(E, B, std, cfg)
    assert V.shape == (n, d + len(BEHAVIOUR_FEATURES))
    np.testing.assert_allclose((V[10:, :d] ** 2).sum(axis=1), 4.0)
    assert (V[:, d:] ** 2).sum(axis=1).mean() == pytest.approx(0.25, rel=1e-9)
    only = clustering_vectors(None, B, std, cfg)
    np.testing.assert_array_equal(only, V[:, d:])
    clipped = clustering_vectors(None, np.full((1, 9), 1e6), std, FeatureConfig(clip_sigma=4.0))
    assert np.abs(clipped).max() == pytest.approx(4.0 * 0.5 / 3.0)
    with pytest.raises(ValueError):
        clustering_vectors(E[:5], B, std, cfg)
