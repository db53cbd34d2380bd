"""ItemIndex: cosine top-k, exclusion, updates, deletion and row reuse, tags, popularity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from profiles.recommend.index import DAY_MS, POPULARITY_DECADES, ItemIndex, _TorchMirror
from tests.unit.profiles.recommend.util import DIM, axis, index_of, item, near, unit


def log_scale(ratio: float) -> float:
    """What ``popularity`` reports for a count at ``ratio`` x the top item's."""
    top = 10.0**POPULARITY_DECADES
    return math.log1p(ratio * top) / math.log1p(top)


def ids(hits: list[tuple[str, float]]) -> list[str]:
    return [pid for pid, _ in hits]


def test_top_k_is_cosine_order_with_scores() -> None:
    idx = index_of([item("a", axis(0)), item("b", near(0, 1, 0.5)), item("c", axis(1))])
    [hits] = idx.top_k(axis(0), k=3)
    assert ids(hits) == ["a", "b", "c"]
    assert hits[0][1] == pytest.approx(1.0)
    assert hits[1][1] == pytest.approx(1 / math.sqrt(1.25), rel=1e-6)
    assert hits[2][1] == pytest.approx(0.0, abs=1e-7)


def test_several_queries_in_one_call() -> None:
    idx = index_of([item("a", axis(0)), item("b", axis(1)), item("c", axis(2))])
    out = idx.top_k(np.vstack([axis(0), axis(2)]), k=1)
    assert [ids(h) for h in out] == [["a"], ["c"]]


def test_exclusion_applies_even_when_excluded_items_fill_the_top() -> None:
    nearest = [item(f"x{i}", near(0, 1, 0.01 * i)) for i in range(6)]
    far = [item("far1", axis(2)), item("far2", near(2, 0, 0.5))]
    idx = index_of([*nearest, *far])
    [hits] = idx.top_k(axis(0), k=2, exclude={f"x{i}" for i in range(6)})
    assert ids(hits) == ["far2", "far1"]
    # Excluding everything leaves nothing rather than something excluded.
    [hits] = idx.top_k(axis(0), k=3, exclude={*(f"x{i}" for i in range(6)), "far1", "far2"})
    assert hits == []


def test_k_larger_than_the_index_returns_everything_once() -> None:
    idx = index_of([item("a", axis(0)), item("b", axis(1))])
    [hits] = idx.top_k(axis(0), k=10)
    assert ids(hits) == ["a", "b"]


def test_upsert_normalises_and_validates_vectors() -> None:
    idx = ItemIndex(DIM)
    idx.upsert(item("a", 3 * axis(0)))
    got = idx.get("a")
    assert got is not None
    assert float(np.linalg.norm(got.vector)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        idx.upsert(item("z", np.zeros(DIM, dtype=np.float32)))
    with pytest.raises(ValueError):
        idx.upsert(item("z", np.ones(DIM + 1, dtype=np.float32)))
    with pytest.raises(ValueError):
        idx.top_k(np.ones(DIM + 1), k=1)


def test_title_change_brings_a_new_vector_and_new_neighbours() -> None:
    idx = index_of([item("a", axis(0)), item("b", near(0, 1, 0.5)), item("c", axis(2))])
    assert ids(idx.top_k(axis(0), k=2)[0]) == ["a", "b"]
    assert ids(idx.top_k(axis(2), k=1)[0]) == ["c"]
    # The listing was retitled into another product: same id, same row, new vector.
    idx.upsert(item("a", near(2, 1, 0.1)))
    assert len(idx) == 3
    assert ids(idx.top_k(axis(0), k=1)[0]) == ["b"]
    assert ids(idx.top_k(axis(2), k=2)[0]) == ["c", "a"]
    assert ids(idx.top_k(near(2, 1, 0.1), k=1)[0]) == ["a"]


def test_discontinued_upsert_removes_the_item_everywhere() -> None:
    idx = index_of([item("a", axis(0), {"tea"}, ("Food",)), item("b", axis(1), {"tea"})])
    idx.record("a", 5.0, ts=0)
    idx.upsert(item("a", axis(0), {"tea"}, ("Food",), discontinued=True))
    assert len(idx) == 1 and "a" not in idx and idx.get("a") is None
    assert idx.tags_of("a") == frozenset()
    assert "a" not in ids(idx.top_k(axis(0), k=5)[0])
    assert "a" not in ids(idx.by_tags({"tea"}, k=5))
    assert idx.popular(5) == [] and idx.popular(5, "Food") == []
    # A discontinued item that was never listed is simply not added.
    idx.upsert(item("new", axis(3), discontinued=True))
    assert "new" not in idx


def test_removed_row_is_reused_and_never_resurrects() -> None:
    idx = index_of([item("a", axis(0), {"tea"}), item("b", axis(1), {"pen"})], capacity=2)
    idx.record("a", 9.0, ts=0)
    idx.remove("a")
    idx.remove("a")  # removing twice is a no-op
    assert ids(idx.top_k(axis(0), k=5)[0]) == ["b"]
    idx.upsert(item("c", axis(2), {"cup"}))  # takes a's row (no growth needed)
    assert idx._vecs.shape[0] == 2
    assert ids(idx.top_k(axis(0), k=5)[0]) == ["b", "c"]  # both cosine 0: by id
    assert ids(idx.top_k(axis(2), k=1)[0]) == ["c"]
    assert idx.by_tags({"tea"}, k=5) == []
    assert ids(idx.by_tags({"cup"}, k=5)) == ["c"]
    # a's popularity went with it: the row's new owner starts from zero.
    assert idx.popular(5) == []
    for hits in idx.top_k(np.vstack([axis(i) for i in range(DIM)]), k=5):
        assert "a" not in ids(hits)


def test_removed_rows_are_masked_even_when_the_query_is_all_negative() -> None:
    # Removed rows are zero vectors (cosine 0): they must not beat real items with cosine < 0.
    idx = index_of([item("a", axis(0)), item("b", axis(1)), item("c", axis(2))])
    idx.remove("b")
    idx.remove("c")
    [hits] = idx.top_k(-axis(0), k=3)
    assert ids(hits) == ["a"]
    assert hits[0][1] == pytest.approx(-1.0)


def test_growth_by_doubling_keeps_every_item() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((100, DIM)).astype(np.float32)
    idx = index_of([item(f"p{i}", unit(v)) for i, v in enumerate(vecs)], capacity=1)
    assert len(idx) == 100 and idx._vecs.shape[0] == 128
    for i in (0, 37, 99):
        assert idx.top_k(unit(vecs[i]), k=1)[0][0][0] == f"p{i}"


def test_top_k_agrees_with_brute_force() -> None:
    rng = np.random.default_rng(1)
    vecs = np.stack([unit(v) for v in rng.standard_normal((300, DIM))])
    idx = index_of([item(f"p{i:03d}", v) for i, v in enumerate(vecs)])
    for i in range(0, 300, 3):
        idx.remove(f"p{i:03d}")
    q = np.stack([unit(v) for v in rng.standard_normal((4, DIM))])
    exclude = {f"p{i:03d}" for i in range(1, 300, 7)}
    got = idx.top_k(q, k=10, exclude=exclude)
    alive = [i for i in range(300) if i % 3 and f"p{i:03d}" not in exclude]
    for row, hits in zip(q, got, strict=True):
        scores = {f"p{i:03d}": float(vecs[i] @ row) for i in alive}
        want = sorted(scores, key=lambda p: -scores[p])[:10]
        assert ids(hits) == want


def test_by_tags_ranks_by_jaccard_then_popularity() -> None:
    idx = index_of(
        [
            item("exact", axis(0), {"tea", "green"}),
            item("half", axis(1), {"tea", "pot"}),
            item("half_pop", axis(2), {"tea", "cup"}),
            item("none", axis(3), {"pen"}),
        ]
    )
    idx.record("half_pop", 1.0, ts=0)
    hits = idx.by_tags({"tea", "green"}, k=10)
    assert ids(hits) == ["exact", "half_pop", "half"]
    assert [round(j, 4) for _, j in hits] == [1.0, 0.3333, 0.3333]
    assert ids(idx.by_tags({"tea", "green"}, k=10, exclude={"exact"})) == ["half_pop", "half"]
    assert idx.by_tags({"nothing"}, k=10) == [] and idx.by_tags(set(), k=10) == []


def test_by_tags_dense_path_matches_sparse_path() -> None:
    # Many items share the tag: the bincount path (not np.unique) runs.
    items = [item(f"p{i:02d}", axis(i % DIM), {"common", f"t{i % 3}"}) for i in range(40)]
    idx = index_of(items)
    hits = idx.by_tags({"common", "t1"}, k=5)
    assert [round(j, 4) for _, j in hits] == [1.0] * 5
    assert all(pid in {f"p{i:02d}" for i in range(1, 40, 3)} for pid in ids(hits))


def test_price_update_keeps_tag_postings() -> None:
    idx = index_of([item("a", axis(0), {"tea"})])
    idx.by_tags({"tea"}, k=1)  # builds the cached posting array
    idx.upsert(item("a", axis(0), {"tea"}))
    assert ids(idx.by_tags({"tea"}, k=1)) == ["a"]
    idx.upsert(item("a", axis(0), {"coffee"}))
    assert idx.by_tags({"tea"}, k=1) == []
    assert ids(idx.by_tags({"coffee"}, k=1)) == ["a"]


def test_popularity_decays_by_event_time() -> None:
    idx = ItemIndex(DIM, popularity_half_life_ms=DAY_MS)
    idx.upsert(item("old", axis(0)))
    idx.upsert(item("new", axis(1)))
    idx.record("old", 3.0, ts=0)
    idx.record("new", 2.0, ts=DAY_MS)  # one half-life later: old counts 1.5 now
    assert [(pid, round(s, 6)) for pid, s in idx.popular(2)] == [("new", 2.0), ("old", 1.5)]
    assert idx.popularity(["new", "old"]).tolist() == pytest.approx([1.0, log_scale(0.75)])


def test_popularity_is_independent_of_arrival_order() -> None:
    events = [("a", 1.0, 5 * DAY_MS), ("b", 3.0, 0), ("a", 2.0, DAY_MS), ("b", 1.0, 9 * DAY_MS)]

    def build(evs: list[tuple[str, float, int]]) -> list[tuple[str, float]]:
        idx = index_of([item("a", axis(0)), item("b", axis(1))])
        for pid, w, ts in evs:
            idx.record(pid, w, ts)
        return idx.popular(2)

    forward, backward = build(events), build(events[::-1])
    assert ids(forward) == ids(backward)
    for (_, x), (_, y) in zip(forward, backward, strict=True):
        assert x == pytest.approx(y)


def test_popularity_survives_centuries_of_half_lives() -> None:
    idx = ItemIndex(DIM, popularity_half_life_ms=1)
    idx.upsert(item("a", axis(0)))
    idx.upsert(item("b", axis(1)))
    idx.record("a", 1.0, ts=0)
    idx.record("b", 1.0, ts=10_000)  # 10k half-lives later: rebased, no overflow
    idx.record("a", 1.0, ts=20_000)
    assert ids(idx.popular(2)) == ["a"]  # b decayed to nothing at a's time
    assert all(math.isfinite(s) for _, s in idx.popular(2))


def test_popularity_recorded_before_the_catalog_upsert_is_kept() -> None:
    idx = ItemIndex(DIM)
    idx.record("early", 2.0, ts=0)
    assert idx.popular(5) == []
    idx.upsert(item("early", axis(0)))
    assert idx.popular(5) == [("early", 2.0)]


def test_popular_per_category_prefix() -> None:
    idx = index_of(
        [
            item("phone", axis(0), category=("Electronics", "Phones")),
            item("tv", axis(1), category=("Electronics", "TV")),
            item("novel", axis(2), category=("Books", "Novels")),
        ]
    )
    for pid, w in [("phone", 3.0), ("tv", 2.0), ("novel", 5.0)]:
        idx.record(pid, w, ts=0)
    assert ids(idx.popular(5)) == ["novel", "phone", "tv"]
    assert ids(idx.popular(5, "Electronics")) == ["phone", "tv"]
    assert ids(idx.popular(5, ("Electronics", "TV"))) == ["tv"]
    assert ids(idx.popular(5, "Electronics", exclude={"phone"})) == ["tv"]
    assert idx.popular(5, "Garden") == []
    # Moving an item to another category moves it between the lists.
    idx.upsert(item("tv", axis(1), category=("Books", "Comics")))
    assert ids(idx.popular(5, "Electronics")) == ["phone"]
    assert ids(idx.popular(5, "Books")) == ["novel", "tv"]


def test_popularity_normalisation_after_removing_the_most_popular() -> None:
    idx = index_of([item("a", axis(0)), item("b", axis(1))])
    idx.record("a", 4.0, ts=0)
    idx.record("b", 2.0, ts=0)
    assert idx.popularity(["b"]).tolist() == pytest.approx([log_scale(0.5)])
    idx.remove("a")
    assert idx.popularity(["b"]).tolist() == [1.0]


def test_record_rejects_negative_weights() -> None:
    idx = ItemIndex(DIM)
    with pytest.raises(ValueError):
        idx.record("a", -1.0, ts=0)


def test_torch_mirror_gives_the_numpy_results() -> None:
    """The CUDA path's logic, run on a CPU torch device (no GPU needed)."""
    rng = np.random.default_rng(2)
    vecs = [unit(v) for v in rng.standard_normal((50, DIM))]
    plain = index_of([item(f"p{i:02d}", v) for i, v in enumerate(vecs)], capacity=4)
    mirrored = ItemIndex(DIM, capacity=4)
    mirrored._mirror = _TorchMirror("cpu", 4, DIM)
    for i, v in enumerate(vecs):
        mirrored.upsert(item(f"p{i:02d}", v))
    for idx in (plain, mirrored):
        idx.remove("p07")
        idx.upsert(item("p50", vecs[7]))
    assert mirrored._mirror is not None
    assert torch.equal(mirrored._mirror.mat[: len(vecs)], torch.from_numpy(plain._vecs[:50]))
    q = np.stack([unit(v) for v in rng.standard_normal((3, DIM))])
    want = plain.top_k(q, k=5, exclude={"p01", "p02"})
    got = mirrored.top_k(q, k=5, exclude={"p01", "p02"})
    for w, g in zip(want, got, strict=True):
        assert ids(w) == ids(g)
        assert [s for _, s in w] == pytest.approx([s for _, s in g], abs=1e-6)
