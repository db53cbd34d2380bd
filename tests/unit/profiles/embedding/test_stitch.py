"""Merging vectors: weighted by evidence, equal to one profile fed both sides' events."""

from __future__ import annotations

import numpy as np

from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile
from profiles.embedding.stitch import merge_embedding

CONFIG = EmbeddingConfig("m", 8, short_half_life_ms=600_000)


def fed(events: list[tuple[np.ndarray, float, int]]) -> EmbeddingProfile:
    p = EmbeddingProfile(CONFIG)
    for vec, weight, ts in events:
        p.learn_one(vec, weight, ts, [("t", 1.0)])
    return p


def test_merged_vectors_equal_one_profile_fed_both_sides() -> None:
    rng = np.random.default_rng(3)
    events = [
        (rng.normal(size=8), float(rng.uniform(0.2, 2)), int(rng.integers(0, 3_600_000)))
        for _ in range(60)
    ]
    anon, user = events[:25], events[25:]
    merged = fed(user)
    merge_embedding(merged, fed(anon))
    both = fed(sorted(events, key=lambda e: e[2]))
    for got, want in ((merged.long, both.long), (merged.short, both.short)):
        assert np.allclose(got.vector(), want.vector(), atol=1e-6)
        assert np.isclose(got.weight(3_600_000), want.weight(3_600_000), rtol=1e-9)


def test_the_side_with_more_evidence_pulls_harder() -> None:
    x, y = np.eye(8)[0], np.eye(8)[1]
    user = fed([(x, 1.0, 1000)] * 9)
    merge_embedding(user, fed([(y, 1.0, 1000)]))
    vec = user.long_term()
    assert vec is not None and vec[0] > 0.99 * 9 * vec[1]


def test_an_empty_user_takes_the_anonymous_vectors_and_interests() -> None:
    anon = fed([(np.eye(8)[2], 1.0, 5)])
    user = EmbeddingProfile(CONFIG)
    merge_embedding(user, anon)
    assert np.allclose(user.long_term(), anon.long_term())
    assert len(user.interest_list()) == 1
