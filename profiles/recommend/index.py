"""An in-memory catalog index: cosine top-k, tag overlap and rolling popularity.

Items live in one contiguous float32 matrix, one unit vector per row, so the nearest items
to several query vectors are one matrix product plus a partial sort (``argpartition``). The
matrix grows by doubling; a removed item's row is zeroed, masked out of every search and
reused by the next new item, so a deleted item can never come back through a stale row.

Beside the vectors the index keeps:

* a tag inverted index (tag -> rows) for Jaccard overlap between a user's tags and items'
  tags, so tags can find items the vectors miss;
* a category-prefix index (("Electronics",), ("Electronics", "Phones"), ...) for popularity
  per category;
* rolling popularity: decayed counts by *event* time with a half-life, stored anchored like
  the profile's tag scores (``w * 2**((ts - anchor) / h)``), so recording an event touches one
  number, late events are exact and the ranking needs no clock.

``device="cpu"`` (the default) is pure numpy. Any torch device (e.g. ``"cuda"``) keeps a
mirror of the matrix on it and searches there; everything else stays on the host.

>>> import numpy as np
>>> idx = ItemIndex(dim=2)
>>> def add(pid, vec, tags, category):
...     idx.upsert(Item(pid, np.array(vec, np.float32), frozenset(tags), category, 1.0))
>>> add("a", [1.0, 0.0], {"tea"}, ("Food",)); add("b", [0.0, 1.0], {"pen"}, ("Office",))
>>> add("c", [0.6, 0.8], {"tea", "pot"}, ("Food",))
>>> [[(pid, round(s, 2)) for pid, s in hits] for hits in idx.top_k(np.array([1.0, 0.0]), k=2)]
[[('a', 1.0), ('c', 0.6)]]
>>> idx.top_k(np.array([1.0, 0.0]), k=2, exclude={"a"})[0][0][0]
'c'
>>> [(pid, round(j, 2)) for pid, j in idx.by_tags({"tea", "pot"}, k=5)]
[('c', 1.0), ('a', 0.5)]
>>> idx.record("b", 1.0, ts=0); idx.record("a", 1.0, ts=0); idx.record("a", 1.0, ts=1)
>>> [pid for pid, _ in idx.popular(2)], [pid for pid, _ in idx.popular(2, ("Office",))]
(['a', 'b'], ['b'])
>>> idx.upsert(Item("a", idx.get("a").vector, frozenset(), ("Food",), 5.0, discontinued=True))
>>> len(idx), idx.get("a") is None, [pid for pid, _ in idx.popular(5)]
(2, True, ['b'])
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from profiles.core.decay import rebase

__all__ = ["DAY_MS", "POPULARITY_DECADES", "Item", "ItemIndex"]

DAY_MS = 86_400_000
FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.intp]

#: Popularity recorded for products the index does not hold yet (events can arrive before the
#: catalog upsert); beyond this many the oldest-recorded are dropped, so bad ids cannot grow it.
_MAX_PENDING = 100_000
#: Products kept per segment by :meth:`ItemIndex.load_segment_popularity` (the pull API's
#: largest k).
SEGMENT_TOP = 200


def _by_count(entry: tuple[str, float]) -> tuple[float, str]:
    return -entry[1], entry[0]


#: Decades of popularity below the top item that :meth:`ItemIndex.popularity` tells apart.
POPULARITY_DECADES = 3.0
#: Below this share of candidate postings vs. rows, ``np.unique`` beats a full ``bincount``.
_SPARSE_SHARE = 0.125


@dataclass(frozen=True)
class Item:
    """One catalog item as the index holds it.

    ``vector`` is the item's unit embedding (title + category through the encoder, see
    :func:`profiles.embedding.text.item_text`); it takes no part in equality or hashing.
    """

    product_id: str
    vector: np.ndarray = field(compare=False, repr=False)
    tags: frozenset[str]
    category: tuple[str, ...]
    price: float
    discontinued: bool = False


#: What stored items hold in place of their vector (the matrix row is the vector).
_NO_VECTOR = np.zeros(0, dtype=np.float32)


def _prefixes(category: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty prefix of a category path.

    >>> _prefixes(("Home", "Kitchen", "Knives"))
    [('Home',), ('Home', 'Kitchen'), ('Home', 'Kitchen', 'Knives')]
    """
    return [tuple(category[:i]) for i in range(1, len(category) + 1)]


def _unit_row(vector: np.ndarray, dim: int) -> npt.NDArray[np.float32]:
    v = np.asarray(vector, dtype=np.float64)
    if v.shape != (dim,) or not np.isfinite(v).all():
        raise ValueError(f"item vector must be finite with shape ({dim},), got {v.shape}")
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise ValueError("item vector must be non-zero")
    # Renormalised here so a slightly off vector (float16 round trip, ...) cannot skew cosines.
    return (v / norm).astype(np.float32)


def rank_rows(primary: FloatArray, secondary: FloatArray, m: int) -> IntArray:
    """Positions of the top ``m`` by ``primary`` desc, then ``secondary`` desc, then position.

    Exact under ties (tag overlaps are small fractions, so ties are the rule) without
    sorting everything: two partial partitions, then a sort of the ``m`` chosen.

    >>> rank_rows(np.array([0.5, 0.9, 0.5, 0.5]), np.array([1.0, 0.0, 3.0, 3.0]), 3).tolist()
    [1, 2, 3]
    """
    n = primary.shape[0]
    if m <= 0 or n == 0:
        return np.empty(0, dtype=np.intp)
    if m < n:
        kth = np.partition(primary, n - m)[n - m]
        above = np.flatnonzero(primary > kth)
        ties = np.flatnonzero(primary == kth)
        need = m - above.shape[0]
        if ties.shape[0] > need:
            sec = secondary[ties]
            kth2 = np.partition(sec, ties.shape[0] - need)[ties.shape[0] - need]
            over = ties[sec > kth2]
            level = ties[sec == kth2]  # ascending positions: the last tie-break
            ties = np.concatenate([over, level[: need - over.shape[0]]])
        chosen = np.concatenate([above, ties])
    else:
        chosen = np.arange(n)
    order = np.lexsort((chosen, -secondary[chosen], -primary[chosen]))
    return chosen[order].astype(np.intp)


class _TorchMirror:
    """The item matrix on a torch device (CUDA): same rows, searched there."""

    def __init__(self, device: str, capacity: int, dim: int) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.mat = torch.zeros((capacity, dim), dtype=torch.float32, device=self.device)

    def grow(self, capacity: int) -> None:
        bigger = self.mat.new_zeros((capacity, self.mat.shape[1]))
        bigger[: self.mat.shape[0]] = self.mat
        self.mat = bigger

    def write(self, row: int, vector: npt.NDArray[np.float32]) -> None:
        self.mat[row] = self.torch.from_numpy(vector).to(self.device)

    def top(
        self, queries: npt.NDArray[np.float32], hw: int, masked: Sequence[int], m: int
    ) -> tuple[npt.NDArray[np.float32], IntArray]:
        torch = self.torch
        q = torch.from_numpy(np.ascontiguousarray(queries)).to(self.device)
        scores = q @ self.mat[:hw].T
        if masked:
            scores[:, torch.as_tensor(list(masked), device=self.device)] = -math.inf
        values, rows = torch.topk(scores, m, dim=1)
        return values.cpu().numpy(), rows.cpu().numpy().astype(np.intp)


class ItemIndex:
    """Catalog items for recommendations; see the module docstring.

    ``capacity`` is the initial number of rows (doubled when full). ``popularity_half_life_ms``
    is the memory of :meth:`record` (event time).
    """

    def __init__(
        self,
        dim: int,
        capacity: int = 1024,
        *,
        device: str = "cpu",
        popularity_half_life_ms: int = 7 * DAY_MS,
    ) -> None:
        if dim < 1 or capacity < 1:
            raise ValueError("dim and capacity must be >= 1")
        if popularity_half_life_ms <= 0:
            raise ValueError("popularity_half_life_ms must be > 0")
        self.dim = dim
        self.device = device
        self.popularity_half_life_ms = popularity_half_life_ms
        self._vecs = np.zeros((capacity, dim), dtype=np.float32)
        self._pop = np.zeros(capacity, dtype=np.float64)  # anchored popularity per row
        self._segment_top: dict[int, list[str]] = {}  # segment -> its most popular products
        self._ntags = np.zeros(capacity, dtype=np.int64)
        self._items: list[Item | None] = []  # per row below the high-water mark
        self._rows: dict[str, int] = {}
        self._free: list[int] = []  # min-heap of removed rows (always masked in searches)
        self._by_tag: dict[str, set[int]] = {}
        self._tag_arrays: dict[str, IntArray] = {}
        self._by_cat: dict[tuple[str, ...], set[int]] = {}
        self._cat_arrays: dict[tuple[str, ...], IntArray] = {}
        self._pop_anchor: int | None = None
        self._pop_ts: int | None = None
        self._pop_max: float | None = 0.0  # None: recompute (the max row was removed)
        self._pending: dict[str, float] = {}
        self._mirror = None if device == "cpu" else _TorchMirror(device, capacity, dim)

    # ------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._rows

    def get(self, product_id: str) -> Item | None:
        row = self._rows.get(product_id)
        if row is None:
            return None
        stored = self._items[row]
        assert stored is not None
        # The vector lives only in the matrix (one copy of 1.5 GB at 1M items, not two).
        return dataclasses.replace(stored, vector=self._vecs[row].copy())

    def tags_of(self, product_id: str) -> frozenset[str]:
        row = self._rows.get(product_id)
        stored = None if row is None else self._items[row]
        return frozenset() if stored is None else stored.tags

    def ids(self) -> list[str]:
        """Product ids held, sorted."""
        return sorted(self._rows)

    def upsert(self, item: Item) -> None:
        """Add or replace ``item`` (a new title brings a new vector); discontinued removes it."""
        if item.discontinued:
            self.remove(item.product_id)
            return
        vector = _unit_row(item.vector, self.dim)
        stored = Item(
            item.product_id,
            _NO_VECTOR,
            frozenset(item.tags),
            tuple(item.category),
            float(item.price),
        )
        row = self._rows.get(item.product_id)
        if row is None:
            row = self._take_row()
            self._rows[item.product_id] = row
            self._pop[row] = self._pending.pop(item.product_id, 0.0)
            self._bump_max(self._pop[row])
            old_tags: frozenset[str] = frozenset()
            old_cats: list[tuple[str, ...]] = []
        else:
            old = self._items[row]
            assert old is not None
            old_tags, old_cats = old.tags, _prefixes(old.category)
        self._items[row] = stored
        self._vecs[row] = vector
        if self._mirror is not None:
            self._mirror.write(row, vector)
        self._ntags[row] = len(stored.tags)
        # Only postings that changed are touched: a price update leaves the arrays cached.
        self._repost(self._by_tag, self._tag_arrays, row, old_tags, stored.tags)
        self._repost(self._by_cat, self._cat_arrays, row, old_cats, _prefixes(stored.category))

    def remove(self, product_id: str) -> None:
        """Forget ``product_id`` (no-op when absent); its row is masked until reused."""
        self._pending.pop(product_id, None)
        row = self._rows.pop(product_id, None)
        if row is None:
            return
        old = self._items[row]
        assert old is not None
        self._repost(self._by_tag, self._tag_arrays, row, old.tags, ())
        self._repost(self._by_cat, self._cat_arrays, row, _prefixes(old.category), ())
        if self._pop_max is not None and self._pop[row] >= self._pop_max:
            self._pop_max = None
        self._items[row] = None
        self._vecs[row] = 0.0
        if self._mirror is not None:
            self._mirror.write(row, self._vecs[row])
        self._pop[row] = 0.0
        self._ntags[row] = 0
        heapq.heappush(self._free, row)

    def vectors(self, product_ids: Sequence[str]) -> npt.NDArray[np.float32]:
        """Unit vectors of ``product_ids`` (all must be held), one row each."""
        return self._vecs[[self._rows[p] for p in product_ids]]

    def _take_row(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        row = len(self._items)
        if row == self._vecs.shape[0]:
            self._grow(2 * row)
        self._items.append(None)
        return row

    def _grow(self, capacity: int) -> None:
        # Doubling keeps upserts amortised O(dim); the copy is the one moment both live.
        vecs = np.zeros((capacity, self.dim), dtype=np.float32)
        vecs[: self._vecs.shape[0]] = self._vecs
        self._vecs = vecs
        self._pop = np.concatenate([self._pop, np.zeros(capacity - self._pop.shape[0])])
        self._ntags = np.concatenate(
            [self._ntags, np.zeros(capacity - self._ntags.shape[0], dtype=np.int64)]
        )
        if self._mirror is not None:
            self._mirror.grow(capacity)

    @staticmethod
    def _repost(
        postings: dict[Any, set[int]],
        arrays: dict[Any, IntArray],
        row: int,
        old: Iterable[Any],
        new: Iterable[Any],
    ) -> None:
        old_set, new_set = set(old), set(new)
        for key in old_set - new_set:
            rows = postings[key]
            rows.discard(row)
            if not rows:
                del postings[key]
            arrays.pop(key, None)
        for key in new_set - old_set:
            postings.setdefault(key, set()).add(row)
            arrays.pop(key, None)

    @staticmethod
    def _array(postings: dict[Any, set[int]], arrays: dict[Any, IntArray], key: Any) -> IntArray:
        cached = arrays.get(key)
        if cached is None:
            cached = np.fromiter(postings.get(key, ()), dtype=np.intp)
            cached.sort()
            arrays[key] = cached
        return cached

    def _masked_rows(self, exclude: Collection[str]) -> list[int]:
        """Removed rows plus the rows of excluded items (each at most once)."""
        excluded = {self._rows[p] for p in exclude if p in self._rows}
        return [*self._free, *sorted(excluded)]

    # ------------------------------------------------------------------ vector search

    def top_k(
        self, query: np.ndarray, k: int, exclude: Collection[str] = ()
    ) -> list[list[tuple[str, float]]]:
        """The ``k`` items nearest (cosine) to each query row, best first; one list per row.

        ``query`` is one unit vector ``(d,)`` or several ``(q, d)``. Excluded and removed rows
        are masked to -inf *before* the partial sort, so the result is exact however many
        excluded items would have been in the top (the same as fetching ``k + len(exclude)``
        and filtering, without the extra rows). Ties are broken by product id.
        """
        q = np.asarray(query, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"query must have shape (d,) or (q, d) with d = {self.dim}")
        hw = len(self._items)
        masked = self._masked_rows(exclude)
        m = min(k, hw - len(masked))
        if m <= 0:
            return [[] for _ in range(q.shape[0])]
        if self._mirror is not None:
            values, rows = self._mirror.top(q, hw, masked, m)
        else:
            # (N, d) @ (d, q), not (q, d) @ (d, N): OpenBLAS runs the skinny product 1.5-3x
            # faster with the item matrix as the left operand (measured on 100k x 384).
            # One contiguous row per query for the partition: along the long axis of an
            # (N, q) array it strides and costs ~2x the copy.
            scores = np.ascontiguousarray((self._vecs[:hw] @ q.T).T)
            if masked:
                scores[:, masked] = -np.inf
            if m < hw:
                # Partition for the m largest in place of negating: no second (q, N) copy.
                rows = np.argpartition(scores, hw - m, axis=1)[:, hw - m :]
            else:
                rows = np.broadcast_to(np.arange(hw), (q.shape[0], hw))
            values = np.take_along_axis(scores, rows, axis=1)
        out = []
        for vals, rws in zip(values.tolist(), rows.tolist(), strict=True):
            hits = []
            for v, r in zip(vals, rws, strict=True):
                item = self._items[r]
                if item is not None and v > -math.inf:
                    hits.append((item.product_id, float(v)))
            hits.sort(key=lambda h: (-h[1], h[0]))
            out.append(hits)
        return out

    # ------------------------------------------------------------------ tags

    def by_tags(
        self, tags: Collection[str], k: int, exclude: Collection[str] = ()
    ) -> list[tuple[str, float]]:
        """The ``k`` items with the highest Jaccard overlap ``|U ∩ I| / |U ∪ I|`` with ``tags``.

        Only items sharing at least one tag qualify. Ties (common: overlaps are small
        fractions) go to the more popular item, then the lower row.
        """
        wanted = set(tags)
        hw = len(self._items)
        postings = [self._array(self._by_tag, self._tag_arrays, t) for t in wanted]
        postings = [p for p in postings if p.shape[0]]
        if k <= 0 or not postings:
            return []
        cand = np.concatenate(postings)
        if cand.shape[0] < _SPARSE_SHARE * hw:
            rows, inter = np.unique(cand, return_counts=True)
        else:
            counts = np.bincount(cand, minlength=hw)
            rows = np.flatnonzero(counts)
            inter = counts[rows]
        excluded = [self._rows[p] for p in exclude if p in self._rows]
        if excluded:
            keep = ~np.isin(rows, excluded)
            rows, inter = rows[keep], inter[keep]
        jaccard = inter / (len(wanted) + self._ntags[rows] - inter)
        top = rank_rows(jaccard, self._pop[rows], k)
        return [(self._id(int(rows[i])), float(jaccard[i])) for i in top]

    def _id(self, row: int) -> str:
        item = self._items[row]
        assert item is not None
        return item.product_id

    # ------------------------------------------------------------------ popularity

    def record(self, product_id: str, weight: float, ts: int) -> None:
        """Count an interaction with ``product_id`` (e.g. purchase 5, cart 3, click 1) at ``ts``."""
        w = float(weight)
        if not (math.isfinite(w) and w >= 0.0):
            raise ValueError(f"weight must be finite and >= 0, got {weight!r}")
        h = self.popularity_half_life_ms
        self._pop_anchor, shrink = rebase(self._pop_anchor, ts, h)
        if shrink != 1.0:
            self._pop *= shrink
            self._pending = {p: s * shrink for p, s in self._pending.items()}
            self._pop_max = None
        self._pop_ts = ts if self._pop_ts is None else max(self._pop_ts, ts)
        add = w * math.pow(2.0, max((ts - self._pop_anchor) / h, -1074.0))
        row = self._rows.get(product_id)
        if row is None:
            self._pending[product_id] = self._pending.pop(product_id, 0.0) + add
            if len(self._pending) > _MAX_PENDING:
                del self._pending[next(iter(self._pending))]
            return
        self._pop[row] += add
        self._bump_max(self._pop[row])

    def load_popularity(
        self, counts: Mapping[str, float], anchor: int | None, latest: int | None
    ) -> None:
        """Replace every count with ``counts`` (anchored at ``anchor``, as :meth:`record` keeps
        them): the shared counts read from Redis, which every worker's events feed.

        >>> idx = ItemIndex(dim=1)
        >>> idx.upsert(Item("a", np.ones(1, np.float32), frozenset(), (), 1.0))
        >>> idx.record("a", 9.0, ts=0)
        >>> idx.load_popularity({"a": 1.0, "b": 4.0}, anchor=0, latest=0)
        >>> idx.popular(5)
        [('a', 1.0)]
        >>> idx.upsert(Item("b", np.ones(1, np.float32), frozenset(), (), 1.0))
        >>> [pid for pid, _ in idx.popular(5)]
        ['b', 'a']
        """
        self._pop[:] = 0.0
        self._pending = {}
        self._pop_anchor, self._pop_ts = anchor, latest
        for pid, value in counts.items():
            row = self._rows.get(pid)
            if row is not None:
                self._pop[row] = value
            elif len(self._pending) < _MAX_PENDING:
                self._pending[pid] = value
        self._pop_max = None

    def load_segment_popularity(
        self, segments: Mapping[int, Mapping[str, float]], keep: int = SEGMENT_TOP
    ) -> None:
        """Replace each segment's ranking with its ``keep`` most counted products (counts on
        one anchor, as merged from Redis), for the cold-start lists of that segment's users.

        >>> idx = ItemIndex(dim=1)
        >>> idx.load_segment_popularity({0: {"a": 1.0, "b": 3.0, "c": 3.0}, 2: {}}, keep=2)
        >>> idx.segment_popular(0), idx.segment_popular(1), idx.segment_popular(None)
        (['b', 'c'], [], [])
        """
        self._segment_top = {
            segment: [pid for pid, v in sorted(counts.items(), key=_by_count)[:keep] if v > 0]
            for segment, counts in segments.items()
        }

    def segment_popular(self, segment: int | None) -> list[str]:
        """Products most popular among ``segment``'s users, best first (may name items the
        index no longer holds; callers skip those)."""
        return [] if segment is None else self._segment_top.get(segment, [])

    def _bump_max(self, value: float) -> None:
        if self._pop_max is not None and value > self._pop_max:
            self._pop_max = float(value)

    def _max_pop(self) -> float:
        if self._pop_max is None:
            hw = len(self._items)
            self._pop_max = float(self._pop[:hw].max()) if hw else 0.0
        return self._pop_max

    def popularity(self, product_ids: Sequence[str]) -> npt.NDArray[np.float64]:
        """Popularity of held items in [0, 1], on a log scale relative to the top item.

        ``log(1 + 10**D * c / top) / log(1 + 10**D)`` with ``D = POPULARITY_DECADES``: counts
        are heavy-tailed (a few items take most interactions), so a linear ratio would call
        almost everything 0; the log spreads the scale over ``D`` decades below the top item.
        Every count shares one anchor, so the value is the same at any read time.

        >>> idx = ItemIndex(dim=1)
        >>> for pid in "abc":
        ...     idx.upsert(Item(pid, np.ones(1, np.float32), frozenset(), (), 1.0))
        >>> idx.record("a", 1000.0, ts=0); idx.record("b", 1.0, ts=0)
        >>> [round(float(x), 3) for x in idx.popularity(["a", "b", "c"])]
        [1.0, 0.1, 0.0]
        """
        top = self._max_pop()
        if top <= 0:
            return np.zeros(len(product_ids))
        pops = self._pop[[self._rows[p] for p in product_ids]]
        scale = 10.0**POPULARITY_DECADES
        return np.asarray(np.log1p(pops / top * scale) / math.log1p(scale), dtype=np.float64)

    def popular(
        self,
        k: int,
        category_prefix: str | Sequence[str] | None = None,
        exclude: Collection[str] = (),
    ) -> list[tuple[str, float]]:
        """The ``k`` most popular items (decayed count as of the latest recorded event time).

        ``category_prefix`` limits to a category (``"Books"`` or ``("Books", "Novels")``).
        Items never recorded are not popular and are left out.
        """
        hw = len(self._items)
        if k <= 0 or self._pop_anchor is None or self._pop_ts is None or hw == 0:
            return []
        excluded = np.array(sorted({self._rows[p] for p in exclude if p in self._rows}), np.intp)
        if category_prefix is None:
            rows = None  # every row: positions are rows
            pops = self._pop[:hw]  # a view: the common case copies nothing
            if excluded.shape[0]:
                pops = pops.copy()
                pops[excluded] = 0.0
        else:
            key = (category_prefix,) if isinstance(category_prefix, str) else tuple(category_prefix)
            rows = self._array(self._by_cat, self._cat_arrays, key)
            pops = self._pop[rows]  # a copy
            if excluded.shape[0] and rows.shape[0]:
                pos = np.minimum(np.searchsorted(rows, excluded), rows.shape[0] - 1)
                pops[pos[rows[pos] == excluded]] = 0.0
        # Removed rows hold 0, so the positive filter drops them along with unrecorded items.
        live = np.flatnonzero(pops > 0)
        top = rank_rows(pops[live], np.zeros(live.shape[0]), k)
        chosen = live[top] if rows is None else rows[live[top]]
        age = (self._pop_ts - self._pop_anchor) / self.popularity_half_life_ms
        scale = math.pow(2.0, max(-age, -1074.0))
        return [(self._id(int(r)), float(self._pop[r]) * scale) for r in chosen.tolist()]
