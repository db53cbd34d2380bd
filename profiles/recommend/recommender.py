"""A user's recommendations from a profile: when to recompute, what to recommend, what to keep.

Glue between the profile and the pure parts (:func:`~profiles.recommend.blend.recommend`,
:func:`~profiles.recommend.throttle.should_recommend`). The throttle state lives in the
profile (``recs``: time, trigger, items, version; ``recs_vector``: the long-term vector the
list was computed from, float16), so it is written, fenced and erased with the profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from profiles.core.profile import Profile
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile
from profiles.recommend.blend import (
    BlendConfig,
    InterestInput,
    Recommendation,
    nearest_for_many,
    popular_list,
    recommend,
)
from profiles.recommend.index import ItemIndex
from profiles.recommend.throttle import interest_shift, should_recommend
from profiles.together.complements import ComplementCache

#: What the blend needs of one profile: long-term vector, interests, top tags, bought items,
#: event count, the query vectors (interests then long-term) in search order, the user's
#: segment's popular products (cold start), and complements of the last purchase.
_Inputs = tuple[
    "np.ndarray | None",
    list[InterestInput],
    list[tuple[str, float]],
    set[str],
    int,
    list[np.ndarray],
    list[str],
    Sequence[tuple[str, float]],
]


__all__ = ["Recommender", "RecsChange", "RecsConfig"]


@dataclass(frozen=True)
class RecsConfig:
    """Blend knobs plus the throttle: at most one list per ``interval_ms`` of event time, and
    only after a purchase or a long-term shift beyond ``shift`` (cosine distance)."""

    blend: BlendConfig = dataclasses.field(default_factory=BlendConfig)
    interval_ms: int = 600_000
    shift: float = 0.1


@dataclass(frozen=True)
class RecsChange:
    """A fresh list for one user, to announce downstream."""

    profile: Profile
    items: tuple[Recommendation, ...]
    trigger: str  # "first", "purchase" or "interest_shift"


class Recommender:
    """Recommends over one :class:`ItemIndex`; searches run in a thread under ``lock``."""

    def __init__(
        self,
        index: ItemIndex,
        config: RecsConfig,
        half_life_ms: int,
        embedding: EmbeddingConfig,
        lock: asyncio.Lock | None = None,
        complements: ComplementCache | None = None,
    ) -> None:
        # Complements of the last purchase; the together feature refreshes the cache per batch.
        self.complements = complements
        self.index = index
        self.config = config
        self.half_life_ms = half_life_ms
        self.embedding = embedding
        self.lock = lock or asyncio.Lock()

    def trigger(self, profile: Profile) -> str | None:
        """Why ``profile`` needs a new list now (None: it does not).

        Cold users (fewer events than ``min_events_for_personal``) get no pushed list: theirs
        would be the global popularity, the same for everyone (the pull API still answers
        with it). The first list is pushed when the user becomes personal.
        """
        if profile.last_ts is None:
            return None
        if sum(profile.counts.values()) < self.config.blend.min_events_for_personal:
            return None
        state = profile.recs
        last = None if state is None else int(state["ts"])
        bought = profile.last_purchase_ts is not None and (
            last is None or profile.last_purchase_ts > last
        )
        shift = interest_shift(_vector(profile.recs_vector), _long_term(profile))
        cfg = self.config
        if not should_recommend(last, profile.last_ts, cfg.interval_ms, bought, shift, cfg.shift):
            return None
        if last is None:
            return "first"
        return "purchase" if bought else "interest_shift"

    def compute(self, profile: Profile, k: int | None = None) -> list[Recommendation]:
        """The blended list (call under :attr:`lock` when the index may change meanwhile)."""
        return self.compute_batch([profile], k)[0]

    def compute_batch(
        self, profiles: Sequence[Profile], k: int | None = None
    ) -> list[list[Recommendation]]:
        """Lists for several users; their vector searches share matrix products."""
        cfg = self.config.blend if k is None else dataclasses.replace(self.config.blend, k=k)
        inputs = [self._inputs(p, cfg) for p in profiles]
        personal = [
            i
            for i, (_, _, _, _, events, vectors, _, _) in enumerate(inputs)
            if vectors and events >= cfg.min_events_for_personal and cfg.w_vector > 0
        ]
        # BLAS threads pay off only for the search of a large catalog; for everything smaller
        # their wake-ups cost more than the work (3k items, 2 CPUs: 4x slower with them).
        threads = None if len(self.index) >= THREADED_SEARCH_ITEMS else 1
        with _blas_threads(threads):
            hits = nearest_for_many(
                self.index,
                [inputs[i][5] for i in personal],
                [inputs[i][3] for i in personal],
                cfg.per_interest,
            )
        found: dict[int, list[list[tuple[str, float]]]] = dict(zip(personal, hits, strict=True))
        with _blas_threads(1):
            return self._blend(inputs, found, cfg)

    def _blend(
        self,
        inputs: Sequence[_Inputs],
        found: dict[int, list[list[tuple[str, float]]]],
        cfg: BlendConfig,
    ) -> list[list[Recommendation]]:
        return [
            recommend(
                self.index,
                long_term,
                interests,
                tags,
                purchased,
                cfg,
                segment_popular,
                events=events,
                vector_hits=found.get(i),
                complements=paired,
            )
            for i, (long_term, interests, tags, purchased, events, _, segment_popular, paired) in (
                enumerate(inputs)
            )
        ]

    def _inputs(self, profile: Profile, cfg: BlendConfig) -> _Inputs:
        emb = self._embedding(profile)
        long_term = emb.long_term() if emb is not None else None
        interests: list[InterestInput] = (
            [(i.vector, i.weight, [t for t, _ in i.tags]) for i in emb.interest_list()]
            if emb is not None
            else []
        )
        vectors = [v for v, _, _ in interests] + ([] if long_term is None else [long_term])
        tags = profile.top_tags(cfg.user_tags, self.half_life_ms)
        events = sum(profile.counts.values())
        segment = self.index.segment_popular(profile.segment)
        paired: Sequence[tuple[str, float]] = ()
        if self.complements is not None and cfg.w_together > 0:
            paired = self.complements.of(profile.purchased)
        bought = set(profile.purchased)
        return long_term, interests, tags, bought, events, vectors, segment, paired

    async def compute_many(
        self, profiles: Sequence[Profile], k: int | None = None
    ) -> list[list[Recommendation]]:
        """Lists for several users in one worker thread (the searches are numpy/torch work)."""
        if not profiles:
            return []
        async with self.lock:
            return await asyncio.to_thread(self.compute_batch, profiles, k)

    async def popular_many(
        self, profiles: Sequence[Profile], k: int | None = None
    ) -> list[list[Recommendation]]:
        """The popularity list each user would get cold (their segment's popular items, then
        the global ones, minus what they bought): the control list of an experiment's holdout
        (``RTP_EXPERIMENT_HOLDOUT=popular``)."""
        n = self.config.blend.k if k is None else k
        async with self.lock:  # the index may change between batches, never during a read
            return [
                popular_list(self.index, self.index.segment_popular(p.segment), set(p.purchased), n)
                for p in profiles
            ]

    def remember(self, profile: Profile, items: Sequence[Recommendation], trigger: str) -> None:
        """Record the list in the profile: the throttle's state, stored with the profile."""
        vector = _long_term(profile)
        profile.recs = {
            "ts": profile.last_ts,
            "version": profile.version,
            "trigger": trigger,
            "items": [r.product_id for r in items],
        }
        profile.recs_vector = b"" if vector is None else vector.astype(np.float16).tobytes()

    def _embedding(self, profile: Profile) -> EmbeddingProfile | None:
        if profile.embedding is None and profile.embedding_blob:
            emb, _ = EmbeddingProfile.load(profile.embedding_blob, self.embedding)
            return emb
        return profile.embedding


#: From this many catalog items on, the vector search may use every BLAS thread.
THREADED_SEARCH_ITEMS = 50_000
_BLAS = ThreadpoolController()


def _blas_threads(limit: int | None) -> contextlib.AbstractContextManager[Any]:
    """Limit numpy's BLAS threads (process-wide) for a block; None leaves them as they are."""
    return contextlib.nullcontext() if limit is None else _BLAS.limit(limits=limit, user_api="blas")


def _long_term(profile: Profile) -> np.ndarray | None:
    return None if profile.embedding is None else profile.embedding.long_term()


def _vector(blob: bytes | None) -> np.ndarray | None:
    if not blob:
        return None
    return np.frombuffer(blob, dtype=np.float16).astype(np.float32)
