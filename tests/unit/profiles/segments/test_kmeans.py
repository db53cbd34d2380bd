"""Mini-batch k-means as sufficient statistics: quality, distribution, seeding, reseeding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import MiniBatchKMeans as SkMiniBatchKMeans
from sklearn.metrics import adjusted_rand_score

from profiles.segments.kmeans import Delta, MiniBatchKMeans, Model
from tests.unit.profiles.segments.helpers import fit, inertia, planted

PROPS = settings(max_examples=100, deadline=None)
DIM = 384 + 9


def _small_model(seed: int = 0) -> tuple[MiniBatchKMeans, Model]:
    """A seeded 4-d model with three centres (for the property tests)."""
    X, _ = planted(300, 3, 4, spread=5.0, seed=seed)
    km = MiniBatchKMeans(3, 4, reservoir=300, seed_factor=10)
    model = km.seed(km.empty(), X)
    assert model.seeded
    return km, model


KM, MODEL = _small_model()
rows4 = st.lists(st.floats(-20, 20), min_size=4, max_size=4)
#: (vectors, weights, worker of each vector) for the 4-d model above
vectors = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(rows4, min_size=n, max_size=n).map(np.array),
        st.lists(st.floats(0.0, 5.0), min_size=n, max_size=n).map(np.array),
        st.lists(st.integers(0, 2), min_size=n, max_size=n).map(np.array),
    )
)


def _assert_same_model(a: Model, b: Model) -> None:
    assert a.version == b.version
    assert a.ids == b.ids
    np.testing.assert_allclose(a.centres, b.centres, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a.counts, b.counts, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(a.born, b.born)


# ----------------------------------------------------------------------------- quality


def test_planted_segments_are_recovered() -> None:
    X, groups = planted(3000, 6, DIM, spread=1.0, noise=2.0, seed=1)
    km = MiniBatchKMeans(6, DIM, seed=3)
    model = fit(km, X, epochs=3)
    labels, d2 = km.predict(model, X)
    assert d2.shape == (3000, 6)
    assert adjusted_rand_score(groups, labels) >= 0.8
    assert sorted(model.ids) == list(range(6))


@pytest.mark.parametrize(
    ("groups", "k", "spread", "noise"),
    [(20, 16, 1.0, 3.0), (30, 32, 0.3, 1.0), (8, 16, 1.0, 2.0)],
)
def test_inertia_within_five_percent_of_scikit_learn(
    groups: int, k: int, spread: float, noise: float
) -> None:
    X, _ = planted(6000, groups, DIM, spread=spread, noise=noise, seed=2)
    ours = fit(MiniBatchKMeans(k, DIM), X, epochs=5, batch=256)
    sk = SkMiniBatchKMeans(n_clusters=k, batch_size=256, max_iter=5, n_init=3, random_state=0)
    sk.fit(X)
    assert inertia(X, ours.centres) <= 1.05 * inertia(X, sk.cluster_centers_)


# ----------------------------------------------------------------------------- distribution


@PROPS
@given(vectors)
def test_merged_worker_deltas_equal_one_worker_on_the_union(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, w, worker = data
    parts = [KM.delta(MODEL, X[worker == i], w[worker == i]) for i in range(3)]
    union = KM.delta(MODEL, X, w)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    np.testing.assert_allclose(merged.sums, union.sums, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(merged.counts, union.counts, rtol=1e-9, atol=1e-9)
    _assert_same_model(KM.apply(MODEL, merged), KM.apply(MODEL, union))


@PROPS
@given(vectors)
def test_delta_merge_is_commutative_and_associative(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, w, worker = data
    a, b, c = (KM.delta(MODEL, X[worker == i], w[worker == i]) for i in range(3))
    ab, ba = a.merge(b), b.merge(a)
    np.testing.assert_array_equal(ab.sums, ba.sums)
    np.testing.assert_array_equal(ab.counts, ba.counts)
    left, right = a.merge(b).merge(c), a.merge(b.merge(c))
    np.testing.assert_allclose(left.sums, right.sums, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(left.counts, right.counts, rtol=1e-12, atol=1e-12)


def test_merge_equals_union_in_full_dimension_with_reseeding() -> None:
    X, _ = planted(4000, 8, DIM, noise=2.0, seed=4)
    km = MiniBatchKMeans(16, DIM, dead_ratio=0.2)
    model = fit(km, X[:1000], epochs=1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        batch = X[rng.choice(len(X), 600, replace=False)]
        half = rng.random(600) < 0.5
        merged = km.delta(model, batch[half]).merge(km.delta(model, batch[~half]))
        one = km.apply(model, merged)
        _assert_same_model(one, km.apply(model, km.delta(model, batch)))
        model = one


def test_a_delta_from_before_seeding_merges_as_nothing() -> None:
    before = MiniBatchKMeans(3, 4).delta(MiniBatchKMeans(3, 4).empty(), np.ones((5, 4)))
    after = KM.delta(MODEL, np.ones((5, 4)))
    for merged in (before.merge(after), after.merge(before)):
        np.testing.assert_array_equal(merged.sums, after.sums)
        np.testing.assert_array_equal(merged.counts, after.counts)
        assert merged.version == after.version
    with pytest.raises(ValueError):
        after.merge(Delta.zeros(2, 4))


def test_weights_count_like_repeated_vectors() -> None:
    X = np.array([[0.0, 0.0, 0.0, 0.0], [20.0, 0.0, 0.0, 0.0], [0.0, 20.0, 0.0, 0.0]])
    weighted = KM.delta(MODEL, X, np.array([1.0, 3.0, 2.0]))
    repeated = KM.delta(MODEL, np.repeat(X, [1, 3, 2], axis=0))
    np.testing.assert_allclose(weighted.sums, repeated.sums)
    np.testing.assert_allclose(weighted.counts, repeated.counts)
    labels, _ = KM.predict(MODEL, X)
    same = KM.delta(MODEL, X, np.array([1.0, 3.0, 2.0]), labels=labels)
    np.testing.assert_array_equal(same.sums, weighted.sums)


def test_apply_is_the_running_mean_of_assigned_vectors() -> None:
    km = MiniBatchKMeans(1, 2, reservoir=10, seed_factor=1, lloyd_iters=0)
    model = km.seed(km.empty(), np.array([[1.0, 1.0]]))
    assert model.counts.tolist() == [1.0]
    rng = np.random.default_rng(0)
    seen = [np.array([[1.0, 1.0]])]
    for _ in range(10):
        batch = rng.normal(size=(int(rng.integers(1, 20)), 2))
        seen.append(batch)
        model = km.apply(model, km.delta(model, batch))
    allx = np.vstack(seen)
    np.testing.assert_allclose(model.centres[0], allx.mean(axis=0), rtol=1e-12, atol=1e-12)
    assert model.counts[0] == len(allx) and model.total == len(allx) - 1


def test_forgetting_follows_drift() -> None:
    rng = np.random.default_rng(0)
    before = [rng.normal(0.0, 0.1, (50, 2)) for _ in range(20)]
    after = [rng.normal(5.0, 0.1, (50, 2)) for _ in range(20)]
    centres = {}
    for f in (0.0, 0.3):
        km = MiniBatchKMeans(1, 2, forgetting=f, reservoir=50, seed_factor=1)
        model = km.seed(km.empty(), before[0])
        for batch in before + after:
            model = km.apply(model, km.delta(model, batch))
        centres[f] = model.centres[0]
    assert np.allclose(centres[0.0], 2.5, atol=0.1)
    assert np.allclose(centres[0.3], 5.0, atol=0.05)


# ----------------------------------------------------------------------------- seeding


def test_predict_before_seeding_says_unassigned() -> None:
    km = MiniBatchKMeans(4, 3, seed_factor=10)
    model = km.seed(km.empty(), np.ones((39, 3)))
    assert not model.seeded and model.seen == 39 and model.version == 1
    labels, d2 = km.predict(model, np.zeros((5, 3)))
    assert labels.tolist() == [-1] * 5 and d2.shape == (5, 0)
    delta = km.delta(model, np.zeros((5, 3)))
    assert delta.weight == 0.0
    assert km.apply(model, delta).version == 2
    X, _ = planted(1, 4, 3, seed=0)
    assert km.seed(model, X).seeded


def test_seeding_is_deterministic_and_k_means_plus_plus_covers_every_group() -> None:
    X, groups = planted(2000, 12, 20, spread=10.0, seed=5)
    km = MiniBatchKMeans(12, 20, seed=9)
    a = km.seed(km.empty(), X)
    b = km.seed(km.empty(), X)
    assert a.to_bytes() == b.to_bytes()
    labels, _ = km.predict(a, X)
    assert adjusted_rand_score(groups, labels) == pytest.approx(1.0)
    assert a.ids == list(range(12)) and a.next_id == 12
    assert a.counts.sum() == 2000  # the reservoir's vectors count once


def test_reservoir_is_a_bounded_uniform_sample() -> None:
    km = MiniBatchKMeans(2, 1, reservoir=1000, seed_factor=10**9)
    model = km.empty()
    stream = np.arange(20_000, dtype=np.float64)[:, None]
    for start in range(0, len(stream), 700):
        model = km.seed(model, stream[start : start + 700])
    assert model.reservoir.shape == (1000, 1) and model.seen == 20_000
    values = model.reservoir[:, 0]
    assert len(np.unique(values)) == 1000
    # each quarter of the stream holds about a quarter of the sample
    quarters = np.histogram(values, bins=4, range=(0, 20_000))[0]
    assert np.all(np.abs(quarters - 250) < 60)


# ----------------------------------------------------------------------------- reseeding


def _three_groups(rng: np.random.Generator, n: int) -> np.ndarray:
    means = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    return means[rng.integers(3, size=n)] + rng.normal(0.0, 0.5, (n, 2))


def test_dead_centre_is_reseeded_where_the_data_is() -> None:
    rng = np.random.default_rng(0)
    km = MiniBatchKMeans(3, 2, reservoir=300, dead_ratio=0.05, warmup=100.0)
    reservoir = _three_groups(rng, 300).astype(np.float32)
    # The third centre sits far from everything, so it never gets a vector.
    model = Model(
        version=1,
        centres=np.array([[0.0, 0.0], [10.0, 0.0], [100.0, 100.0]]),
        counts=np.array([10.0, 10.0, 10.0]),
        ids=[0, 1, 2],
        seeded=True,
        reservoir=reservoir,
        seen=300,
        next_id=3,
        born=np.array([1, 1, 1]),
    )
    stale = km.delta(model, _three_groups(rng, 100))
    for _ in range(20):
        previous = model
        model = km.apply(model, km.delta(model, _three_groups(rng, 100)))
        if model.born[2] != previous.born[2]:
            break
    else:
        pytest.fail("the dead centre was never reseeded")
    assert model.born[2] == model.version
    means = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    assert np.linalg.norm(means - model.centres[2], axis=1).min() < 2.0
    assert model.ids[:2] == [0, 1] and model.ids[2] == 3  # a new group: a fresh id
    assert model.counts[2] == pytest.approx(min(model.counts[:2]))
    # A delta assigned before the reseed does not drag the new centre back.
    bad = Delta(stale.sums.copy(), stale.counts.copy(), stale.version)
    bad.sums[2], bad.counts[2] = [500.0, 500.0], 5.0
    after = km.apply(model, bad)
    np.testing.assert_allclose(after.centres[2], model.centres[2])
    # The three groups end up with a centre each.
    for _ in range(30):
        model = km.apply(model, km.delta(model, _three_groups(rng, 100)))
    labels, _ = km.predict(model, means)
    assert sorted(labels.tolist()) == [0, 1, 2]
    assert 2 not in model.ids


def test_nothing_is_reseeded_before_warmup() -> None:
    km = MiniBatchKMeans(2, 2, reservoir=10, warmup=1e9)
    model = Model(
        version=1,
        centres=np.array([[0.0, 0.0], [100.0, 100.0]]),
        counts=np.array([1.0, 0.0]),
        ids=[0, 1],
        seeded=True,
        reservoir=np.zeros((10, 2), dtype=np.float32) + 1,
        born=np.array([1, 1]),
    )
    after = km.apply(model, km.delta(model, np.zeros((50, 2))))
    np.testing.assert_array_equal(after.centres[1], [100.0, 100.0])


# ----------------------------------------------------------------------------- serialisation


def test_model_round_trips_through_bytes() -> None:
    X, _ = planted(1500, 5, DIM, seed=6)
    km = MiniBatchKMeans(5, DIM, reservoir=500)
    model = fit(km, X, epochs=1)
    back = Model.from_bytes(model.to_bytes())
    for name in ("version", "ids", "seeded", "seen", "next_id", "total"):
        assert getattr(back, name) == getattr(model, name)
    for name in ("centres", "counts", "born", "reservoir"):
        np.testing.assert_array_equal(getattr(back, name), getattr(model, name))
        assert getattr(back, name).dtype == getattr(model, name).dtype
    assert back.to_bytes() == model.to_bytes()
    empty = Model.from_bytes(km.empty().to_bytes())
    assert not empty.seeded and empty.centres.shape == (0, DIM)


@PROPS
@given(vectors, st.one_of(st.none(), st.integers(0, 2**40)))
def test_delta_round_trips_through_bytes(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], version: int | None
) -> None:
    X, w, _ = data
    delta = KM.delta(MODEL, X, w)
    delta.version = version
    back = Delta.from_bytes(delta.to_bytes())
    np.testing.assert_array_equal(back.sums, delta.sums)
    np.testing.assert_array_equal(back.counts, delta.counts)
    assert back.version == version


def test_corrupt_blobs_are_refused() -> None:
    blob = MODEL.to_bytes()
    with pytest.raises(ValueError):
        Delta.from_bytes(blob)
    with pytest.raises(ValueError):
        Model.from_bytes(b"junk" + blob)
    with pytest.raises(ValueError):
        Model.from_bytes(blob + b"\0")


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        KM.predict(MODEL, np.ones((2, 5)))
    with pytest.raises(ValueError):
        KM.delta(MODEL, np.array([[np.inf, 0, 0, 0]]))
    with pytest.raises(ValueError):
        KM.delta(MODEL, np.ones((2, 4)), np.array([1.0, -1.0]))
    with pytest.raises(ValueError):
        KM.apply(MODEL, Delta.zeros(2, 4))
    with pytest.raises(ValueError):
        MiniBatchKMeans(3, 4, forgetting=1.0)
