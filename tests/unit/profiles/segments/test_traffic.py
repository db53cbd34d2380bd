"""End to end on generated traffic: profiles from the event log, segments from planted interests.

The generator plants 1-3 interest categories per user. Each event's "embedding" here is a fixed
random direction per top-level category (a stand-in for the text encoder), accumulated with
the profile's kind weights like the long-term vector; behaviour features come from the real
profile math. Users dominated by one interest must land in one segment per interest.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score

from profiles.core.config import DEFAULT_KIND_WEIGHTS, ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record, apply
from profiles.segments.features import (
    DAY_MS,
    FeatureConfig,
    Standardizer,
    behaviour_vector_of,
    clustering_vectors,
    profile_stats,
    rfm_values,
)
from profiles.segments.hysteresis import choose_many
from profiles.segments.kmeans import MiniBatchKMeans
from profiles.segments.summary import summarize
from stream.simulation.catalog_words import CATEGORIES
from stream.simulation.generator import TrafficConfig, TrafficGenerator

DIM = 384
DAYS = 14


def test_segments_recover_planted_interests() -> None:
    gen = TrafficGenerator(TrafficConfig(seed=7, users=600, products=500))
    users = gen.user_ids()
    row = {u: i for i, u in enumerate(users)}
    keys = sorted(c.key for c in CATEGORIES)
    top_key = {name: c.key for c in CATEGORIES for name in (c.zh, c.en)}
    rng = np.random.default_rng(7)
    directions = rng.normal(size=(len(keys), DIM))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)

    profiles = {u: Profile(u) for u in users}
    sums = np.zeros((len(users), DIM))
    for offset, event in enumerate(gen.history(days=DAYS)):
        user = event["user_id"]
        if user not in profiles or event["type"] in ("product", "user_erasure"):
            continue
        apply(
            profiles[user],
            [Record(InputPartition("site-events", 0), offset, event)],
            ProfileConfig(),
            tags,
        )
        if "category" in event:
            key = top_key[event["category"][0]]
            weight = DEFAULT_KIND_WEIGHTS[event["type"]]
            sums[row[user]] += weight * directions[keys.index(key)]
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    embeddings = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0)

    as_of = gen.config.start_ms + DAYS * DAY_MS
    behaviour = np.vstack([behaviour_vector_of(profiles[u], as_of) for u in users])
    # Two workers learn the standardizer on their halves; the merge is what they share.
    left, right = Standardizer(), Standardizer()
    left.learn_many(behaviour[::2])
    right.learn_many(behaviour[1::2])
    vectors = clustering_vectors(embeddings, behaviour, left.merge(right), FeatureConfig())

    km = MiniBatchKMeans(len(keys), vectors.shape[1], seed=1)
    model = km.empty()
    for _ in range(5):
        order = rng.permutation(len(users))
        for start in range(0, len(users), 100):
            batch = vectors[order[start : start + 100]]
            model = (
                km.apply(model, km.delta(model, batch)) if model.seeded else km.seed(model, batch)
            )
    labels, d2 = km.predict(model, vectors)

    truth = [gen.user_truth(u)["interests"] for u in users]
    primary = np.array([keys.index(t[0]["key"]) for t in truth])
    focused = np.array([t[0]["weight"] >= 0.7 for t in truth])
    assert focused.sum() > 250
    assert adjusted_rand_score(primary[focused], labels[focused]) >= 0.8

    segments = choose_many([None] * len(users), d2, model.ids)
    assert segments == [model.ids[j] for j in labels]
    summary = summarize(
        model.ids,
        labels,
        vectors,
        [{"user_id": u} for u in users],
        [profiles[u].top_tags(5, ProfileConfig().half_life_ms) for u in users],
        [rfm_values(profile_stats(profiles[u]), as_of) for u in users],
    )
    assert sum(s["size"] for s in summary) == len(users)
    assert all(len(s["representatives"]) == min(3, s["size"]) for s in summary)


def tags(event: dict[str, object]) -> tuple[tuple[str, float], ...]:
    category = event.get("category")
    return ((str(category[-1]), 1.0),) if isinstance(category, list) and category else ()
