"""Embedding vectors as a profile feature: field ``e``, one encoder call per batch.

The batch's distinct texts (catalog items included, so a product's vector is ready
before anyone clicks it) are encoded once in :meth:`EmbeddingFeature.prepare`; every
applied event then moves the user's long, short and interest vectors, learnt per user per
batch in one call (:meth:`EmbeddingProfile.learn_many`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from profiles.core.profile import EventLearner, Profile, Tag
from profiles.embedding.embedder import Embedder
from profiles.embedding.profile import EmbeddingProfile
from profiles.embedding.text import combine, event_texts
from profiles.pipeline.feature import Batch, Feature, Fields, FieldValue, Stats

log = logging.getLogger(__name__)

#: The batch's text vectors, in :attr:`Batch.extra` (the item index reads them too).
VECTORS = "vectors"


def vector_learner(embed: Callable[[dict[str, Any]], np.ndarray | None]) -> EventLearner:
    """Learn each positively weighted event's vector (``embed``: the event's unit vector).

    The event is queued on the user's embedding profile; the queue is learnt in one
    :meth:`EmbeddingProfile.learn_many` call (same state as one :meth:`learn_one` per event,
    in order) when the profile is first read: once per user per batch.
    """

    def learn(
        profile: Profile, event: dict[str, Any], ts: int, weight: float, tags: Sequence[Tag]
    ) -> None:
        if weight > 0 and profile.embedding is not None:
            vector = embed(event)
            if vector is not None:
                profile.embedding.add(vector, weight, ts, tags)

    return learn


class EmbeddingFields(Fields):
    names = ("e",)

    def decode(self, profile: Profile, values: Sequence[bytes | None]) -> None:
        profile.embedding_blob = values[0]  # decoded only when the profile is computed

    def encode(self, profile: Profile) -> dict[str, FieldValue]:
        return {} if profile.embedding is None else {"e": profile.embedding.to_bytes()}


class EmbeddingFeature(Feature):
    name = "embedding"
    fields = EmbeddingFields()

    def __init__(self, embedder: Embedder, emit_vector: bool = False) -> None:
        self.embedder = embedder
        self.emit_vector = emit_vector

    async def prepare(self, batch: Batch, stats: Stats) -> None:
        texts = [text for r in batch.records for text, _ in event_texts(r.event, batch.items)]
        batch.extra[VECTORS] = await self.embedder.vectors(texts)

    def attach(self, profile: Profile, stats: Stats) -> None:
        """Decode the stored vectors once per cached profile; another model's are dropped."""
        if profile.embedding is not None:
            return
        profile.embedding, changed = EmbeddingProfile.load(
            profile.embedding_blob, self.embedder.config
        )
        profile.embedding_blob = None
        if changed:
            stats.counts["model_changes"] = stats.counts.get("model_changes", 0) + 1
            log.warning(
                "user %s: stored vectors are from another model; starting afresh with %s",
                profile.user_id,
                self.embedder.config.model_id,
            )

    def learner(self, batch: Batch) -> EventLearner:
        vectors: Mapping[str, np.ndarray] = batch.extra.get(VECTORS, {})
        items = batch.items
        return vector_learner(lambda event: combine(event_texts(event, items), vectors))

    def describe(self, profile: Profile, event: dict[str, Any]) -> None:
        if profile.embedding is not None:
            event["model"] = profile.embedding.model_id
            vector = profile.embedding.long_term()
            if self.emit_vector and vector is not None:
                event["vector"] = [round(float(x), 6) for x in vector]
