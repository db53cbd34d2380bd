"""One worker's side of the shared segmentation: assign users, accumulate, merge.

Per batch (:meth:`Segmenter.assign`, pure CPU, no I/O): the users written in the
batch get a clustering vector (long-term embedding + standardised behaviour),
the nearest centre of the worker's copy of the shared model, with hysteresis so
border users do not flap, and their vectors are added to the worker's pending
sufficient statistics. On a timer (:meth:`Segmenter.sync`) the pending
statistics are merged into the model in Redis and the fresh model comes back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from profiles.core.profile import Profile
from profiles.redis.segments import CentroidStore
from profiles.segments.features import (
    BEHAVIOUR_FEATURES,
    FeatureConfig,
    Standardizer,
    behaviour_vector_of,
    clustering_vectors,
)
from profiles.segments.hysteresis import choose_many
from profiles.segments.kmeans import Delta, MiniBatchKMeans, Model

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SegmentChange:
    profile: Profile
    previous: int | None
    segment: int
    model_version: int


class Segmenter:
    """Assigns segments with the worker's copy of the model; merges its statistics."""

    def __init__(
        self,
        kmeans: MiniBatchKMeans,
        store: CentroidStore,
        features: FeatureConfig,
        margin: float = 0.1,
        seed_after_users: int = 1000,
        seeding_sample: int = 500,
    ) -> None:
        self.kmeans = kmeans
        self.store = store
        self.features = features
        self.margin = margin
        self.seed_after_users = seed_after_users
        self.seeding_sample = seeding_sample
        self.model: Model = kmeans.empty()
        self.standardizer = Standardizer(len(BEHAVIOUR_FEATURES))
        self._pending = Delta.zeros(kmeans.k, kmeans.dim, None)
        self._increment = Standardizer(len(BEHAVIOUR_FEATURES))
        self._seeding: list[np.ndarray] = []
        self.merges = 0

    def assign(self, profiles: list[Profile], as_of_ms: int) -> list[SegmentChange]:
        """Segments for ``profiles`` (set on them); returns the users whose segment changed."""
        users: list[Profile] = []
        longs: list[np.ndarray] = []
        for p in profiles:
            vector = p.embedding.long_term() if p.embedding is not None else None
            if vector is not None:
                users.append(p)
                longs.append(vector)
        if not users:
            return []
        behaviour = np.vstack([behaviour_vector_of(p, as_of_ms) for p in users])
        embeddings = np.vstack(longs)
        self._increment.learn_many(behaviour)
        vectors = clustering_vectors(embeddings, behaviour, self.standardizer, self.features)
        if not self.model.seeded:
            self._keep_for_seeding(vectors)
            return []
        labels, d2 = self.kmeans.predict(self.model, vectors)
        chosen = choose_many([p.segment for p in users], d2, self.model.ids, self.margin)
        self._pending = self._pending.merge(self.kmeans.delta(self.model, vectors, labels=labels))
        changes = []
        for profile, segment in zip(users, chosen, strict=True):
            if segment != profile.segment:
                changes.append(SegmentChange(profile, profile.segment, segment, self.model.version))
                profile.segment = segment
        return changes

    def _keep_for_seeding(self, vectors: np.ndarray) -> None:
        room = self.seeding_sample - sum(len(v) for v in self._seeding)
        if room > 0:
            self._seeding.append(vectors[:room])

    async def sync(self) -> Model:
        """Merge pending statistics into Redis; adopt the model and standardizer found there."""
        seeding = np.empty((0, self.kmeans.dim))
        shared = self.store.standardizer.n if self.store.standardizer is not None else 0
        # Seed only once the shared standardizer has seen enough users to scale features.
        if self._seeding and shared + self._increment.n >= self.seed_after_users:
            seeding = np.vstack(self._seeding)
        model = await self.store.merge(self._pending, self._increment, self.kmeans, seeding)
        if len(seeding):
            self._seeding.clear()
        self._pending = Delta.zeros(self.kmeans.k, self.kmeans.dim, model.version)
        self._increment = Standardizer(len(BEHAVIOUR_FEATURES))
        if self.store.standardizer is not None:
            self.standardizer = self.store.standardizer
        if model.version != self.model.version:
            log.info(
                "segment model v%d (seeded=%s, k=%d)", model.version, model.seeded, len(model.ids)
            )
        self.model = model
        self.merges += 1
        return model

    async def start(self) -> None:
        """Adopt the stored model, if any (a restarted worker loses nothing merged)."""
        stored = await self.store.load()
        if stored is not None:
            self.model = stored
            self._pending = Delta.zeros(self.kmeans.k, self.kmeans.dim, stored.version)
        if self.store.standardizer is not None:
            self.standardizer = self.store.standardizer
