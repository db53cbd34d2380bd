"""Segment summaries for marketers, from what is stored: the shared model, the membership
sets and a sample of member profiles (for the CLI, the HTTP API and the PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from profiles.core.profile import Profile
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile
from profiles.redis import keys
from profiles.redis.segments import CentroidStore
from profiles.redis.store import RedisStore
from profiles.segments.features import (
    FeatureConfig,
    Standardizer,
    behaviour_vector_of,
    clustering_vectors,
    profile_stats,
    rfm_values,
)
from profiles.segments.kmeans import MiniBatchKMeans
from profiles.segments.summary import plot_segments, summarize


def _long_term(profile: Profile) -> np.ndarray | None:
    if not profile.embedding_blob:
        return None
    model, dim = EmbeddingProfile.stored_model(profile.embedding_blob)
    embedding, _ = EmbeddingProfile.load(profile.embedding_blob, EmbeddingConfig(model, dim))
    return embedding.long_term()


async def segment_report(
    store: RedisStore,
    half_life_ms: int,
    sample: int = 200,
    features: FeatureConfig | None = None,
    plot: Path | None = None,
) -> dict[str, Any]:
    """Sizes (exact), top tags, mean RFM, representatives (from a sample), optional PNG."""
    centroids = CentroidStore(store.client)
    model = await centroids.load()
    if model is None or not model.seeded:
        return {"model_version": None if model is None else model.version, "segments": []}
    pipe = store.client.pipeline(transaction=False)
    for sid in model.ids:
        pipe.scard(keys.segment_members(sid))
        pipe.srandmember(keys.segment_members(sid), sample)
    replies = await pipe.execute()
    sizes = {sid: int(replies[2 * i]) for i, sid in enumerate(model.ids)}
    members = sorted({m.decode() for i in range(len(model.ids)) for m in replies[2 * i + 1]})
    profiles, _ = await store.load(members, ())
    users = [p for p in profiles.values() if p.last_ts is not None]
    longs = [_long_term(p) for p in users]
    users = [u for u, v in zip(users, longs, strict=True) if v is not None]
    if not users:
        return {"model_version": model.version, "segments": []}
    embeddings = np.vstack([v for v in longs if v is not None])
    as_of = max(p.last_ts or 0 for p in users)
    behaviour = np.vstack([behaviour_vector_of(p, as_of) for p in users])
    std = centroids.standardizer or Standardizer(behaviour.shape[1])
    vectors = clustering_vectors(embeddings, behaviour, std, features or FeatureConfig())
    kmeans = MiniBatchKMeans(len(model.ids), vectors.shape[1])
    labels, _ = kmeans.predict(model, vectors)
    summaries = summarize(
        model.ids,
        labels,
        vectors,
        [{"user_id": p.user_id} for p in users],
        [p.top_tags(10, half_life_ms) for p in users],
        [rfm_values(profile_stats(p), as_of) for p in users],
        centres=model.centres,
    )
    for summary in summaries:
        summary["size"] = sizes.get(summary["id"], summary.get("size", 0))
        summary["sampled"] = int(np.sum(np.asarray(model.ids)[labels] == summary["id"]))
    if plot is not None:
        ids = [model.ids[i] for i in labels]
        plot_segments(
            vectors,
            ids,
            model.centres,
            model.ids,
            plot,
            f"User segments (model v{model.version}, {len(users)} sampled users)",
        )
    return {"model_version": model.version, "segments": summaries}
