"""Blended recommendations: vector neighbours + tag overlap + popularity, diversified.

Candidates come from three places, so each signal can find items the others miss:

* the ``per_interest`` nearest items (cosine) to each interest vector and to the long-term
  vector, one matrix product for all of them (:meth:`ItemIndex.top_k`);
* the ``per_interest`` items whose tags overlap most (Jaccard) with the user's top tags
  (:meth:`ItemIndex.by_tags`): tags are exact where the encoder is weak (e.g. Chinese text in
  an English model) and vectors are smooth where tags are sparse;
* nothing else: popularity only scores candidates (and fills the list if they run out).

Each candidate gets one score ``w_vector * cosine + w_tags * jaccard + w_popularity *
popularity``, where cosine is the best over the user's vectors and popularity is the item's
decayed count relative to the most popular item's, on a log scale
(:meth:`ItemIndex.popularity`: counts are heavy-tailed, and a linear ratio put nearly every
candidate at 0; in ``stream.evaluation.recs`` the linear ratio cost about 15% of the blend's
hit rate). A signal
with weight 0 also brings no candidates, so the same function gives the vector-only and
tags-only baselines.

Diversity (``diversity`` = d in [0, 1]): each candidate belongs to its nearest interest; the k
slots are shared between interests by ``(1 - d) * weight share + d * equal share`` (at least
one each while k allows), and within that the pick is MMR, ``(1 - d) * score - d * max cosine
to the items already picked``, so the list is neither one interest nor ten near-identical
items. d = 0 is the plain top k by score. The list is returned sorted by score.

Purchased items are excluded and discontinued ones are not in the index at all. Users with
too few events (or no vectors and no tags) get popularity: the segment's list when given,
then the global one.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from profiles.recommend.index import ItemIndex

__all__ = ["BlendConfig", "Recommendation", "nearest_for_many", "quotas", "recommend"]

#: An interest as the blend takes it: (unit vector, weight, its top tags).
InterestInput = tuple[np.ndarray, float, Sequence[str]]


@dataclass(frozen=True)
class BlendConfig:
    """Knobs of :func:`recommend`.

    ``user_tags`` is how many of the user's strongest tags form the set compared with item
    tags (and searched for tag candidates); 40 did best in ``stream.evaluation.recs`` (20: a
    few points lower, 50: no better), so hand the blend at least that many.
    """

    k: int = 10
    per_interest: int = 50
    w_vector: float = 0.6
    w_tags: float = 0.3
    w_popularity: float = 0.1
    w_together: float = 0.0  # complements of the last purchase (``profiles/together/``)
    diversity: float = 0.3
    min_events_for_personal: int = 3
    user_tags: int = 40

    def __post_init__(self) -> None:
        if self.k < 0 or self.per_interest < 1 or self.user_tags < 1:
            raise ValueError("k must be >= 0, per_interest and user_tags >= 1")
        if min(self.w_vector, self.w_tags, self.w_popularity, self.w_together) < 0:
            raise ValueError("weights must be >= 0")
        if not 0.0 <= self.diversity <= 1.0:
            raise ValueError("diversity must be in [0, 1]")


@dataclass(frozen=True)
class Recommendation:
    """One recommended item with the score that ranked it and why.

    ``reason``: ``source`` ("interest", "long_term", "tags", "together" or "popularity"),
    ``interest`` (index into the interests given, or None), ``cosine``, ``tag_jaccard``,
    ``popularity``, ``shared_tags``, and ``together`` for a complement of the last purchase;
    popularity picks carry ``scope`` ("segment" or "global") instead.
    """

    product_id: str
    score: float
    reason: dict[str, Any]


def quotas(weights: Sequence[float], k: int, diversity: float) -> list[int]:
    """Slots per interest: largest remainder on the blended share, at least 1 while k allows.

    >>> quotas([0.9, 0.1], 10, 0.3)
    [8, 2]
    >>> quotas([0.9, 0.1], 10, 0.0)
    [9, 1]
    >>> quotas([1.0, 0.0, 0.0], 2, 0.3)
    [2, 0, 0]
    """
    n = len(weights)
    if n == 0 or k <= 0:
        return [0] * n
    total = sum(weights)
    shares = [
        (1 - diversity) * (w / total if total > 0 else 1 / n) + diversity / n for w in weights
    ]
    raw = [k * s for s in shares]
    out = [math.floor(r) for r in raw]
    order = sorted(range(n), key=lambda i: (-(raw[i] - out[i]), i))
    for i in order[: k - sum(out)]:
        out[i] += 1
    # Every interest keeps a slot while there are enough, taken from the largest quota.
    for i in range(n):
        if out[i] == 0 and k >= n and diversity > 0:
            donor = max(range(n), key=lambda j: (out[j], -j))
            if out[donor] > 1:
                out[donor] -= 1
                out[i] = 1
    return out


def recommend(
    index: ItemIndex,
    long_term: np.ndarray | None,
    interests: Sequence[InterestInput],
    user_tags: Sequence[tuple[str, float]],
    purchased: Collection[str],
    cfg: BlendConfig,
    segment_popular: Sequence[str] = (),
    *,
    events: int | None = None,
    vector_hits: Sequence[Sequence[tuple[str, float]]] | None = None,
    complements: Sequence[tuple[str, float]] = (),
) -> list[Recommendation]:
    """Top ``cfg.k`` items for one user, best first (see the module docstring).

    ``complements``: items bought together with the user's last purchase and their strength
    in [0, 1] (:func:`profiles.together.complements.complements`); with ``cfg.w_together``
    they join the candidates and add ``w_together * strength`` to their score.

    ``events`` is the user's event count when known: below ``cfg.min_events_for_personal``
    the user is cold and gets popularity. ``vector_hits``: the nearest items of the user's
    vectors when the caller searched for many users at once (:func:`nearest_for_many`);
    purchased items in them are skipped here.

    >>> import numpy as np
    >>> from profiles.recommend.index import Item
    >>> idx = ItemIndex(dim=2)
    >>> for pid, v, tags in [("tea", [1, 0], {"tea"}), ("pot", [0.8, 0.6], {"tea", "pot"}),
    ...                      ("pen", [0, 1], {"pen"})]:
    ...     idx.upsert(Item(pid, np.array(v, np.float32), frozenset(tags), ("Shop",), 1.0))
    >>> idx.record("pen", 1.0, ts=0)
    >>> recs = recommend(idx, np.array([1.0, 0.0]), [], [("tea", 1.0)], {"tea"},
    ...                  BlendConfig(k=2), events=10)
    >>> [(r.product_id, r.reason["source"]) for r in recs]
    [('pot', 'long_term'), ('pen', 'long_term')]
    >>> [r.product_id for r in recommend(idx, None, [], [], (), BlendConfig(k=2))]
    ['pen']
    """
    if cfg.k == 0:
        return []
    exclude = set(purchased)
    vectors = [np.asarray(v, dtype=np.float32) for v, _, _ in interests]
    weights = [max(float(w), 0.0) for _, w, _ in interests]
    if long_term is not None:
        vectors.append(np.asarray(long_term, dtype=np.float32))
    tag_set = _top_tag_set(user_tags, cfg.user_tags)
    use_vectors = cfg.w_vector > 0 and bool(vectors)
    use_tags = cfg.w_tags > 0 and bool(tag_set)
    cold = events is not None and events < cfg.min_events_for_personal
    if cold or not (use_vectors or use_tags):
        return popular_list(index, segment_popular, exclude, cfg.k)

    candidates: set[str] = set()
    if use_vectors:
        if vector_hits is None:
            vector_hits = index.top_k(np.vstack(vectors), cfg.per_interest, exclude)
        for hits in vector_hits:
            candidates.update(pid for pid, _ in hits if pid not in exclude)
    if use_tags:
        candidates.update(pid for pid, _ in index.by_tags(tag_set, cfg.per_interest, exclude))
    paired: dict[str, float] = {}
    if cfg.w_together > 0:
        paired = {p: s for p, s in complements if p not in exclude and p in index}
        candidates.update(paired)
    if not candidates:
        return popular_list(index, segment_popular, exclude, cfg.k)
    ids = sorted(candidates)
    item_vecs = index.vectors(ids)
    pop = index.popularity(ids)
    if vectors:
        cos = item_vecs @ np.vstack(vectors).T  # (candidates, interests [+ long-term])
        best_cos = cos.max(axis=1)
    else:
        cos = np.zeros((len(ids), 0), dtype=np.float32)
        best_cos = np.zeros(len(ids), dtype=np.float32)
    jaccard = np.array([_jaccard(tag_set, index.tags_of(pid)) for pid in ids])
    together = np.array([paired.get(pid, 0.0) for pid in ids])
    score = cfg.w_vector * best_cos + cfg.w_tags * jaccard + cfg.w_popularity * pop
    score = score + cfg.w_together * together
    # Nearest interest of each candidate (-1: no interests, the long-term vector alone).
    group = cos[:, : len(interests)].argmax(axis=1) if interests else np.full(len(ids), -1)

    picked = _select(score, pop, item_vecs, group, weights, cfg)
    recs = []
    for i in picked:
        vec_part = cfg.w_vector * float(best_cos[i]) if vectors else 0.0
        tags_part = cfg.w_tags * float(jaccard[i]) if use_tags else 0.0
        tags_won = use_tags and tags_part > vec_part
        nearest = int(cos[i].argmax()) if vectors else -1
        from_interest = 0 <= nearest < len(interests)
        source = "tags" if tags_won else ("interest" if from_interest else "long_term")
        if cfg.w_together * float(together[i]) > max(vec_part, tags_part):
            source = "together"
        shared = sorted(tag_set & index.tags_of(ids[i]))
        reason: dict[str, Any] = {
            "source": source,
            "interest": int(group[i]) if interests else None,
            "cosine": round(float(best_cos[i]), 4),
            "tag_jaccard": round(float(jaccard[i]), 4),
            "popularity": round(float(pop[i]), 4),
            "shared_tags": shared,
        }
        if ids[i] in paired:
            reason["together"] = round(float(together[i]), 4)
        recs.append(Recommendation(ids[i], float(score[i]), reason))
    recs.sort(key=lambda r: (-r.score, -r.reason["popularity"], r.product_id))
    if len(recs) < cfg.k:
        # Fewer candidates than slots (tiny catalog): popular items fill, after the personal.
        taken = exclude | {r.product_id for r in recs}
        floor = min((r.score for r in recs), default=0.0)
        for rec in popular_list(index, (), taken, cfg.k - len(recs)):
            recs.append(Recommendation(rec.product_id, min(rec.score, floor), rec.reason))
    return recs


def nearest_for_many(
    index: ItemIndex,
    queries: Sequence[Sequence[np.ndarray]],
    excluded: Sequence[Collection[str]],
    per_query: int,
    max_scores: int = 8_000_000,
) -> list[list[list[tuple[str, float]]]]:
    """:meth:`ItemIndex.top_k` for several users in few matrix products (one per group of
    users whose score matrix stays under ``max_scores`` floats): the same neighbours as one
    search per user, at a fraction of the cost (one pass over the item matrix per group).

    A group costs about 16 bytes per score while it is searched (the scores, their contiguous
    copy and the int64 partition indices), so the default bounds it near 128 MB: a 3k-item
    catalog searches ~450 users at once, 100k items ~13, 1M items one user at a time. (64M
    scores pushed a burst's peak RSS 0.2 GB higher.)

    Each user's excluded items are dropped from its own lists, so every list still holds
    ``per_query`` items (when the index has them).
    """
    out: list[list[list[tuple[str, float]]]] = [[] for _ in queries]
    rows_per_group = max(1, max_scores // max(1, len(index)))
    start = 0
    while start < len(queries):
        end, rows = start, 0
        while end < len(queries) and (end == start or rows + len(queries[end]) <= rows_per_group):
            rows += len(queries[end])
            end += 1
        group = [q for user in queries[start:end] for q in user]
        if group:
            extra = max(len(excluded[u]) for u in range(start, end))
            hits = index.top_k(np.vstack(group), per_query + extra)
            at = 0
            for u in range(start, end):
                drop = excluded[u]
                for row in hits[at : at + len(queries[u])]:
                    out[u].append([h for h in row if h[0] not in drop][:per_query])
                at += len(queries[u])
        start = end
    return out


def _top_tag_set(user_tags: Sequence[tuple[str, float]], n: int) -> set[str]:
    ranked = sorted(((t, w) for t, w in user_tags if w > 0), key=lambda tw: (-tw[1], tw[0]))
    return {t for t, _ in ranked[:n]}


def _jaccard(a: set[str], b: frozenset[str]) -> float:
    """Jaccard overlap of two tag sets (0 when both are empty).

    >>> _jaccard({"tea", "pot"}, frozenset({"tea", "cup", "green"}))
    0.25
    """
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def _select(
    score: np.ndarray,
    pop: np.ndarray,
    vecs: np.ndarray,
    group: np.ndarray,
    weights: Sequence[float],
    cfg: BlendConfig,
) -> list[int]:
    """Indices of the ``cfg.k`` picks: interest quotas, then MMR within what they allow."""
    n = score.shape[0]
    k = min(cfg.k, n)
    d = cfg.diversity
    if d == 0.0:
        order = np.lexsort((np.arange(n), -pop, -score))
        return [int(i) for i in order[:k]]
    quota = quotas(weights, cfg.k, d) if weights else []
    taken = [0] * len(quota)
    max_sim = np.full(n, -1.0)
    free = np.ones(n, dtype=bool)
    picked: list[int] = []
    while len(picked) < k:
        open_groups = [g for g in range(len(quota)) if taken[g] < quota[g]]
        pool = free & np.isin(group, open_groups) if open_groups else free
        if not pool.any():  # the open interests ran out of candidates: anyone may fill
            pool = free
        mmr = (1 - d) * score - d * np.maximum(max_sim, 0.0)
        mmr = np.where(pool, mmr, -np.inf)
        best = float(mmr.max())
        # Ties: the more popular, then the lower index (ids are sorted, so the lower id).
        tied = np.flatnonzero(mmr == best)
        i = int(tied[np.lexsort((tied, -pop[tied]))[0]])
        picked.append(i)
        free[i] = False
        if 0 <= group[i] < len(taken):
            taken[int(group[i])] += 1
        max_sim = np.maximum(max_sim, vecs @ vecs[i])
    return picked


def popular_list(
    index: ItemIndex, segment: Sequence[str], exclude: set[str], k: int
) -> list[Recommendation]:
    """Cold start: the segment's popular items (in its order), then the global ones.

    The score is 1 / (1 + rank): these are ranked lists, and the score only keeps them in
    order.
    """
    out: list[tuple[str, str]] = []
    seen = set(exclude)
    for pid in segment:
        if len(out) == k:
            break
        if pid not in seen and pid in index:
            out.append((pid, "segment"))
            seen.add(pid)
    if len(out) < k:
        out.extend((pid, "global") for pid, _ in index.popular(k - len(out), exclude=seen))
    pops = index.popularity([pid for pid, _ in out]) if out else np.zeros(0)
    return [
        Recommendation(
            pid,
            1.0 / (1 + rank),
            {"source": "popularity", "scope": scope, "popularity": round(float(p), 4)},
        )
        for rank, ((pid, scope), p) in enumerate(zip(out, pops.tolist(), strict=True))
    ]
