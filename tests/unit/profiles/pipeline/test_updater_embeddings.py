"""Embedding profiles through the batch updater: one encode per batch, model changes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.embedding.cache import EmbeddingCache
from profiles.embedding.codec import Format, blob_format
from profiles.embedding.embedder import Embedder
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile
from profiles.embedding.text import combine, event_texts, item_text
from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from tests.unit.profiles.pipeline.test_updater import Words, click

CFG = ProfileConfig()


class HashEncoder:
    """Deterministic stand-in for a model: a text's vector comes from its hash."""

    def __init__(self, model_id: str = "hash-a", dim: int = 16) -> None:
        self.model_id, self.dim = model_id, dim
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32)


def embedder(encoder: HashEncoder, storage: Format = "f32") -> Embedder:
    config = EmbeddingConfig(encoder.model_id, encoder.dim, storage=storage)
    return Embedder(EmbeddingCache(encoder), config)


def updater(store: MemoryStore, enc: HashEncoder, storage: Format = "f32") -> BatchUpdater:
    features = builtin_features(partitions=1, embedder=embedder(enc, storage))
    return BatchUpdater(store, CFG, Words(), features, clock=lambda: 1.0)


def recs(*events: dict[str, Any], start: int = 0) -> list[Record]:
    return [Record(InputPartition("in", 0), start + i, e) for i, e in enumerate(events)]


async def test_one_encoder_call_per_batch_with_deduplicated_texts() -> None:
    enc, store = HashEncoder(), MemoryStore()
    batch = recs(
        *(click(i, f"u{i % 3}", title="red shoes", category=["Shoes"]) for i in range(9)),
        {
            "event_id": "s",
            "type": "search",
            "schema_version": 1,
            "user_id": "u0",
            "ts": 5,
            "query": "boots",
        },
    )
    await updater(store, enc).process(batch)
    assert len(enc.calls) == 1
    assert sorted(enc.calls[0]) == sorted(["boots", item_text("red shoes", ["Shoes"])])


async def test_single_event_user_long_term_vector_is_the_text_vector() -> None:
    enc, store = HashEncoder(), MemoryStore()
    await updater(store, enc).process(recs(click(1, "a", title="tea", category=["Food"])))
    blob = store.field("a", "e")
    profile, changed = EmbeddingProfile.load(blob, EmbeddingConfig("hash-a", 16))
    expected = HashEncoder().encode([item_text("tea", ["Food"])])[0]
    long_term = profile.long_term()
    assert not changed and long_term is not None
    assert float(long_term @ expected) > 0.9999
    assert len(profile.interest_list()) == 1


async def test_cache_means_a_title_is_encoded_once_across_batches() -> None:
    enc, store = HashEncoder(), MemoryStore()
    worker = updater(store, enc)
    await worker.process(recs(click(1, "a", title="tea", category=["Food"])))
    await worker.process(recs(click(2, "b", title="tea", category=["Food"]), start=1))
    assert sum(len(c) for c in enc.calls) == 1


async def test_model_change_discards_old_vectors_never_mixes_them() -> None:
    store = MemoryStore()
    await updater(store, HashEncoder("hash-a")).process(recs(click(1, "a", title="x")))
    other = HashEncoder("hash-b")
    result = await updater(store, other).process(recs(click(2, "a", title="y"), start=1))
    assert result.model_changes == 1
    blob = store.field("a", "e")
    profile, changed = EmbeddingProfile.load(blob, EmbeddingConfig("hash-b", 16))
    assert not changed
    assert profile.long.total == CFG.kind_weights["click"]  # only the new model's event
    assert store.profiles["a"][0] == 2  # the behaviour profile kept its history


def test_event_vector_combines_texts_by_share() -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    review = {
        "type": "review",
        "text": "great",
        "product_id": "p",
        "title": "Tea",
        "category": ["Food"],
        "rating": 5,
    }
    parts = event_texts(review, {})
    assert parts == [("great", 0.5), ("Tea | Food", 0.5)]
    vec = combine(parts, {"great": a, "Tea | Food": b})
    assert vec is not None and np.allclose(vec, [2**-0.5, 2**-0.5])
    assert combine([("missing", 1.0)], {}) is None


def test_catalog_fills_event_text() -> None:
    items = {"p": {"title": "Kettle", "category": ["Home"]}}
    assert event_texts({"type": "click", "product_id": "p"}, items) == [("Kettle | Home", 1.0)]
    assert event_texts({"type": "click", "product_id": "q"}, items) == []


async def test_a_profile_stored_as_float32_is_read_and_rewritten_compactly() -> None:
    """Migration: a user whose ``e`` was written by the float32 encoder keeps their vectors;
    the next write stores them in the configured compact format."""
    enc, store = HashEncoder(), MemoryStore()
    await updater(store, enc, "f16").process(recs(click(1, "a", title="tea", category=["Food"])))
    blob = store.field("a", "e")
    assert blob is not None and blob_format(blob) == "f16"
    config = EmbeddingConfig("hash-a", 16)
    before, _ = EmbeddingProfile.load(blob, config)
    store.set_field("a", "e", before.to_bytes("f32"))  # as the previous release wrote it
    await updater(store, enc, "f16").process(
        recs(click(2, "a", title="tea", category=["Food"]), start=1)
    )
    after = store.field("a", "e")
    assert after is not None and blob_format(after) == "f16"
    profile, changed = EmbeddingProfile.load(after, config)
    assert not changed
    assert profile.long.total == 2 * CFG.kind_weights["click"]  # both events, none lost
    long_term, expected = profile.long_term(), before.long_term()
    assert long_term is not None and expected is not None
    assert float(long_term @ expected) > 0.9999


async def test_a_merge_carries_the_anonymous_vectors_into_the_users() -> None:
    """Identity stitching: the merged user's long- and short-term vectors equal one profile's
    fed both ids' events (``merge_embedding``), through seal and merge records."""
    from profiles.core.handover import split_link

    enc, store = HashEncoder(), MemoryStore()
    up = updater(store, enc)
    titles = [("red shoes", "Shoes"), ("green tea", "Food"), ("trail tent", "Camping")]
    anon = [
        click(i, "anon:a", ts=1000 * i, title=t, category=[c]) for i, (t, c) in enumerate(titles)
    ]
    mine = [click(10 + i, "u1", ts=500 + 1000 * i, title=t, category=[c])
            for i, (t, c) in enumerate(reversed(titles))]  # fmt: skip
    link = {"type": "identify", "event_id": "l", "user_id": "u1", "ts": 9000,
            "anonymous_id": "anon:a"}  # fmt: skip
    await up.process(recs(*mine, start=100))
    (merge,) = (await up.process(recs(*anon, *split_link(link)))).routed
    assert "vectors" in merge.event
    await up.process([merge])
    both = [{**e, "user_id": "ref"} for e in [*anon, *mine]]
    await up.process(recs(*sorted(both, key=lambda e: int(e["ts"])), start=200))
    config = EmbeddingConfig("hash-a", 16)
    merged, _ = EmbeddingProfile.load(store.field("u1", "e"), config)
    ref, _ = EmbeddingProfile.load(store.field("ref", "e"), config)
    for got, want in (
        (merged.long_term(), ref.long_term()),
        (merged.short_term(), ref.short_term()),
    ):
        assert got is not None and want is not None
        assert np.allclose(got, want, atol=1e-5)
    assert merged.long.total == pytest.approx(ref.long.total)
