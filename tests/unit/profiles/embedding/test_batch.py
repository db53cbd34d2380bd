"""The batch path (``learn_many``, ``add`` + ``flush``) against the reference ``learn_one`` loop.

Every case runs the same event sequence both ways and compares the whole state: clock,
totals, counts, last times, tags (keys exactly, weights to 1e-9 relative), vector directions
to cosine >= 0.999999, and the stored bytes decoded (f32 and f16) within the codec's rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from profiles.embedding.estimators import DecayedMean, Interests
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile

DIM = 16
DAY = 86_400_000
TAGS = ["shoes", "tea", "red", "cup", "lamp", "sofa", "kid", "gift"]

Event = tuple[np.ndarray, float, int, list[tuple[str, float]]]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(a @ b) / (na * nb)


def _close(a: float, b: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b)) or abs(a - b) < 1e-300


def _events(rng: np.random.Generator, n: int, start: int, spread_ms: int) -> list[Event]:
    """Clustered directions (joins and merges happen), duplicates, late and zero-weight events."""
    topics = rng.standard_normal((4, DIM))
    out: list[Event] = []
    t = start
    previous: np.ndarray | None = None
    for _ in range(n):
        kind = rng.random()
        if previous is not None and kind < 0.1:
            vec = previous.copy()  # a duplicate of the previous event's vector
        elif kind < 0.2:
            vec = rng.standard_normal(DIM)  # a stray direction: a new interest
        else:
            vec = topics[rng.integers(len(topics))] + 0.4 * rng.standard_normal(DIM)
        vec *= float(rng.uniform(0.1, 10.0))  # any length: learnt normalised
        previous = vec
        t += int(rng.integers(0, spread_ms))
        ts = t - int(rng.integers(0, spread_ms * 3)) if rng.random() < 0.2 else t  # late
        weight = 0.0 if rng.random() < 0.05 else float(rng.choice([0.5, 1.0, 3.0, 1e-3]))
        tags = [(str(rng.choice(TAGS)), float(rng.uniform(0, 1))) for _ in range(rng.integers(3))]
        out.append((vec, weight, ts, tags))
    return out


def _config(short_ms: int = 30 * 60_000, long_ms: int = 30 * DAY, **kw: object) -> EmbeddingConfig:
    return EmbeddingConfig("m", DIM, long_ms, short_ms, **kw)  # type: ignore[arg-type]


def _loop(profile: EmbeddingProfile, events: Sequence[Event]) -> None:
    for vec, w, ts, tags in events:
        profile.learn_one(vec, w, ts, tags)


def _many(profile: EmbeddingProfile, events: Sequence[Event]) -> None:
    if events:
        profile.learn_many(
            np.stack([e[0] for e in events]),
            [e[1] for e in events],
            [e[2] for e in events],
            [e[3] for e in events],
        )


def _queued(profile: EmbeddingProfile, events: Sequence[Event]) -> None:
    for vec, w, ts, tags in events:
        profile.add(vec, w, ts, tags)


def assert_same_mean(got: DecayedMean, ref: DecayedMean) -> None:
    assert got.ts == ref.ts
    assert _close(got.total, ref.total)
    a, b = got.vector(), ref.vector()
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        assert _cos(a, b) >= 0.999999
        np.testing.assert_allclose(a, b, atol=1e-6)


def assert_same_interests(got: Interests, ref: Interests) -> None:
    assert got.ts == ref.ts
    assert len(got._clusters) == len(ref._clusters)
    for g, r in zip(got._clusters, ref._clusters, strict=True):
        assert (g.count, g.last_ts) == (r.count, r.last_ts)
        assert _close(g.total, r.total)
        assert sorted(g.tags) == sorted(r.tags)
        assert all(_close(g.tags[t], r.tags[t]) for t in r.tags)
        assert _cos(g.sum, r.sum) >= 0.999999
        np.testing.assert_allclose(g.sum, r.sum, rtol=1e-9, atol=1e-12 * float(np.abs(r.sum).max()))
    for g, r in zip(got.interests(), ref.interests(), strict=True):
        assert (g.events, g.last_ts, [t for t, _ in g.tags]) == (
            r.events,
            r.last_ts,
            [t for t, _ in r.tags],
        )


def assert_same(got: EmbeddingProfile, ref: EmbeddingProfile) -> None:
    assert_same_mean(got.long, ref.long)
    assert_same_mean(got.short, ref.short)
    assert_same_interests(got.interests, ref.interests)


def assert_same_bytes(
    got: EmbeddingProfile, ref: EmbeddingProfile, config: EmbeddingConfig
) -> None:
    """The stored blobs decode to the same values within the codec's own rounding."""
    for storage, rel in (("f32", 1e-6), ("f16", 2e-3)):
        a, _ = EmbeddingProfile.load(got.to_bytes(storage), config)  # type: ignore[arg-type]
        b, _ = EmbeddingProfile.load(ref.to_bytes(storage), config)  # type: ignore[arg-type]
        for ma, mb in ((a.long, b.long), (a.short, b.short)):
            assert (ma.ts, ma._sum is None) == (mb.ts, mb._sum is None)
            assert _close(ma.total, mb.total)
            if ma._sum is not None and mb._sum is not None:
                scale = float(np.abs(mb._sum).max())
                np.testing.assert_allclose(ma._sum, mb._sum, atol=rel * scale)
        ia, ib = a.interests._clusters, b.interests._clusters
        assert [(c.count, c.last_ts, sorted(c.tags)) for c in ia] == [
            (c.count, c.last_ts, sorted(c.tags)) for c in ib
        ]
        for ca, cb in zip(ia, ib, strict=True):
            np.testing.assert_allclose(ca.sum, cb.sum, atol=rel * float(np.abs(cb.sum).max()))


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("path", [_many, _queued])
def test_batches_give_the_state_of_the_event_loop(seed: int, path: object) -> None:
    rng = np.random.default_rng(seed)
    short_ms = int(rng.choice([60_000, 30 * 60_000]))
    long_ms = int(rng.choice([3_600_000, 30 * DAY]))
    config = _config(short_ms, long_ms, interests=int(rng.integers(1, 6)))
    config = EmbeddingConfig(
        "m", DIM, long_ms, short_ms, config.interests, float(rng.choice([0.3, 0.5, 0.8]))
    )
    ref, got = EmbeddingProfile(config), EmbeddingProfile(config)
    t = int(rng.integers(0, 10**12))
    for _ in range(4):  # several batches: a fresh profile first, then a warm one
        events = _events(rng, int(rng.integers(1, 60)), t, int(rng.choice([1_000, 60_000, DAY])))
        t = max(e[2] for e in events)
        _loop(ref, events)
        path(got, events)  # type: ignore[operator]
        assert_same(got, ref)
    assert_same_bytes(got, ref, config)


@pytest.mark.parametrize("seed", range(10))
def test_a_loaded_profile_learns_the_same_either_way(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    config = _config()
    base = EmbeddingProfile(config)
    _loop(base, _events(rng, 40, 10**12, 60_000))
    events = _events(rng, 50, 10**12 + 40 * 60_000, 60_000)
    for storage in ("f32", "f16"):
        blob = base.to_bytes(storage)  # type: ignore[arg-type]
        ref, _ = EmbeddingProfile.load(blob, config)
        got, _ = EmbeddingProfile.load(blob, config)
        _loop(ref, events)
        _many(got, events)
        assert_same(got, ref)


def test_very_old_and_far_apart_events_vanish_the_same_way() -> None:
    """Events so far apart that decays underflow: old interests and sums vanish alike."""
    rng = np.random.default_rng(3)
    config = _config(short_ms=1_000, long_ms=1_000, interests=3)
    ref, got = EmbeddingProfile(config), EmbeddingProfile(config)
    v = rng.standard_normal((8, DIM))
    events: list[Event] = [
        (v[0], 1.0, 0, [("tea", 1.0)]),
        (v[1], 1.0, 5_000, []),
        (v[2], 1.0, 5_000 + 1_100_000, [("cup", 1.0)]),  # 1,100 half-lives: all underflow
        (v[3], 1.0, 0, [("old", 1.0)]),  # far too late: decayed to nothing, moves nothing
        (v[4], 1e-300, 5_000 + 1_100_000 - 40_000, [("tiny", 1.0)]),  # subnormal-scale sum
        (v[5], 2.0, 5_000 + 2_200_000, []),
        (v[2], 1.0, 5_000 + 2_200_000, [("cup", 1.0)]),
    ]
    _loop(ref, events)
    _many(got, events)
    assert_same(got, ref)
    assert len(got.interests) == len(ref.interests) == 2


def test_the_first_event_of_a_fresh_profile() -> None:
    config = _config()
    ref, got = EmbeddingProfile(config), EmbeddingProfile(config)
    event: Event = (np.arange(1.0, DIM + 1.0), 1.0, 42, [("tea", 1.0)])
    _loop(ref, [event])
    _queued(got, [event])
    assert_same(got, ref)
    assert got.interests.ts == 42 and got.long.total == 1.0


def test_bad_input_raises_before_anything_changes() -> None:
    config = _config()
    profile = EmbeddingProfile(config)
    _loop(profile, _events(np.random.default_rng(1), 10, 0, 1_000))
    before = profile.to_bytes("f32")
    good = np.ones(DIM)
    for vectors, weights, tags in [
        ([good, np.zeros(DIM)], [1.0, 1.0], [[], []]),  # a zero vector
        ([good, np.full(DIM, np.nan)], [1.0, 1.0], [[], []]),
        ([good, good], [1.0, -1.0], [[], []]),
        ([good, good], [1.0, 1.0], [[], [("tea", -1.0)]]),
    ]:
        with pytest.raises(ValueError):
            profile.learn_many(np.stack(vectors), weights, [5_000, 6_000], tags)
        assert profile.to_bytes("f32") == before
    with pytest.raises(ValueError):
        profile.learn_one(np.zeros(DIM), 1.0, 7_000, [])
    with pytest.raises(ValueError):
        profile.add(np.ones(DIM + 1), 1.0, 7_000, [])
    with pytest.raises(ValueError):
        profile.add(good, float("inf"), 7_000, [])


def test_queued_events_are_learnt_before_any_read() -> None:
    config = _config()
    profile = EmbeddingProfile(config)
    profile.add(np.eye(DIM)[0], 1.0, 1_000, [("tea", 1.0)])
    assert profile.long.total == 1.0  # reading flushes
    profile.add(np.eye(DIM)[1], 1.0, 2_000, [])
    profile.learn_one(np.eye(DIM)[2], 1.0, 3_000, [])  # the queue goes first: order kept
    assert [i.events for i in profile.interest_list()] == [1, 1, 1]
    assert profile.interests.ts == 3_000
