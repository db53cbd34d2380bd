"""Stable segment ids across model versions and refits."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.segments.kmeans import MiniBatchKMeans
from profiles.segments.matching import default_threshold, stable_ids
from tests.unit.profiles.segments.helpers import fit, planted

PROPS = settings(max_examples=100, deadline=None)
DIM = 384 + 9


@PROPS
@given(st.integers(2, 12), st.integers(0, 2**32 - 1), st.floats(0.0, 0.1))
def test_ids_follow_centres_through_a_permutation(k: int, seed: int, jitter: float) -> None:
    rng = np.random.default_rng(seed)
    old = rng.normal(0.0, 10.0, (k, 5))
    old_ids = rng.choice(1000, size=k, replace=False).tolist()
    perm = rng.permutation(k)
    new = old[perm] + rng.normal(0.0, jitter, (k, 5))
    assert stable_ids(old, old_ids, new) == [old_ids[p] for p in perm]


@PROPS
@given(st.integers(2, 10), st.integers(0, 2**32 - 1), st.integers(0, 3))
def test_far_centres_get_fresh_ids_never_seen_before(k: int, seed: int, moved: int) -> None:
    rng = np.random.default_rng(seed)
    old = rng.normal(0.0, 1.0, (k, 4))
    old_ids = rng.choice(50, size=k, replace=False).tolist()
    new = old.copy()
    far = rng.choice(k, size=min(moved, k), replace=False)
    new[far] += 1e3 * (1 + np.arange(len(far)))[:, None]
    ids = stable_ids(old, old_ids, new)
    assert len(set(ids)) == k
    fresh = [i for i in ids if i not in old_ids]
    assert len(fresh) == len(far)
    assert all(f > max(old_ids) for f in fresh)
    kept = [r for r in range(k) if r not in set(far.tolist())]
    assert [ids[r] for r in kept] == [old_ids[r] for r in kept]


def test_more_or_fewer_centres_and_explicit_next_id() -> None:
    old = np.array([[0.0, 0.0], [10.0, 0.0]])
    assert stable_ids(old, [4, 9], np.array([[10.0, 0.1], [0.0, 0.1], [5.0, 5.0]])) == [9, 4, 10]
    assert stable_ids(old, [4, 9], np.array([[0.1, 0.0]])) == [4]
    assert stable_ids(old, [4, 9], np.array([[50.0, 0.0]]), next_id=100) == [100]
    assert stable_ids(np.zeros((0, 2)), [], np.array([[1.0, 1.0], [2.0, 2.0]])) == [0, 1]
    # one old centre: no inter-centre distance, so any move keeps the id unless told otherwise
    assert stable_ids(old[:1], [4], np.array([[99.0, 0.0]])) == [4]
    assert stable_ids(old[:1], [4], np.array([[99.0, 0.0]]), threshold=1.0) == [5]


def test_a_far_outlier_does_not_make_near_centres_swap_ids() -> None:
    # A plain Hungarian on squared distances would trade the outlier's huge cost for two
    # moderate ones; gating keeps the two near centres on their ids.
    old = np.array([[0.0, 5.0], [10.0, 0.0], [100.0, 100.0]])
    new = np.array([[0.0, 5.5], [10.0, 0.0], [0.0, 1.0]])
    assert default_threshold(old) > 4.5
    assert stable_ids(old, [0, 1, 2], new) == [0, 1, 3]


def test_ids_survive_a_small_perturbation_of_the_data() -> None:
    X, _ = planted(3000, 6, DIM, noise=2.0, seed=11)
    km = MiniBatchKMeans(6, DIM, seed=1)
    model = fit(km, X, epochs=2)
    labels, _ = km.predict(model, X)
    before = np.asarray(model.ids)[labels]
    rng = np.random.default_rng(5)
    perturbed = X + rng.normal(0.0, 0.1, X.shape)

    # 1. The same model keeps learning from the perturbed data: ids do not change.
    updated = fit(km, perturbed, epochs=1, seed=3, model=model)
    assert updated.ids == model.ids
    labels, _ = km.predict(updated, perturbed)
    assert np.mean(np.asarray(updated.ids)[labels] == before) >= 0.99

    # 2. A refit from scratch (other seed, other order) gets its ids by matching.
    km2 = MiniBatchKMeans(6, DIM, seed=2)
    refit = fit(km2, perturbed, epochs=2, seed=4)
    ids = stable_ids(model.centres, model.ids, refit.centres)
    assert sorted(ids) == sorted(model.ids)
    labels, _ = km2.predict(refit, perturbed)
    assert np.mean(np.asarray(ids)[labels] == before) >= 0.99
