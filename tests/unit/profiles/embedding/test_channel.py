"""The hashed text channel: deterministic unit vectors that keep Chinese texts apart."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import profiles.embedding.channel
from profiles.embedding.cache import DictTier, EmbeddingCache, redis_key
from profiles.embedding.channel import (
    CHANNEL_ID,
    ChannelEncoder,
    channel_model_id,
    features,
    hashed_vectors,
    mix,
)
from profiles.encoder.encoder import Encoder, EncoderConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[4]

# Catalog-style texts: two cat-food titles, two running shoes, and a tea.
CAT_A = "皇家 全价 冻干猫粮 成猫 | 宠物 > 猫 > 猫粮"
CAT_B = "比瑞吉 无谷 猫粮 幼猫 | 宠物 > 猫 > 猫粮"
SHOE_A = "耐克 缓震 跑步鞋 男款 | 运动户外 > 跑步 > 跑鞋"
SHOE_B = "李宁 轻质 跑步鞋 女款 | 运动户外 > 跑步 > 跑鞋"
TEA = "伊利 罐装 明前乌龙茶 500g | 食品 > 饮料冲调 > 茶叶"


def test_features_cover_han_runs_and_latin_words() -> None:
    got = features("Nike 跑步鞋, 42码")
    assert got == [
        ("nike", 1.0),
        ("跑", 0.5),
        ("跑步", 1.0),
        ("步", 0.5),
        ("步鞋", 1.0),
        ("鞋", 0.5),
        ("42", 1.0),
        ("码", 0.5),
    ]
    assert features(" | > ,.!") == []


def test_vectors_are_unit_rows_and_zero_without_features() -> None:
    vecs = hashed_vectors([CAT_A, SHOE_A, "", "> | ,", "x"], 384)
    assert vecs.shape == (5, 384) and vecs.dtype == np.float32
    norms = np.linalg.norm(vecs, axis=1)
    assert np.allclose(norms[[0, 1, 4]], 1.0, atol=1e-6)
    assert np.all(norms[[2, 3]] == 0.0)


def test_rows_do_not_depend_on_the_batch() -> None:
    together = hashed_vectors([CAT_A, SHOE_A, TEA], 384)
    alone = np.vstack([hashed_vectors([t], 384) for t in (CAT_A, SHOE_A, TEA)])
    reversed_ = hashed_vectors([TEA, SHOE_A, CAT_A], 384)[::-1]
    assert np.array_equal(together, alone)
    assert np.array_equal(together, reversed_)


def test_vectors_are_the_same_in_another_process() -> None:
    # Python's str hash is salted per process; the channel must not depend on it, or two
    # workers (or a restart) would give one title two vectors.
    code = (
        "import sys; from profiles.embedding.channel import hashed_vectors; "
        f"sys.stdout.buffer.write(hashed_vectors([{CAT_A!r}, {SHOE_A!r}], 384).tobytes())"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, check=True
    ).stdout
    here = hashed_vectors([CAT_A, SHOE_A], 384)
    assert np.array_equal(np.frombuffer(out, dtype=np.float32).reshape(2, 384), here)


def test_texts_sharing_words_are_closer_than_unrelated_ones() -> None:
    v = hashed_vectors([CAT_A, CAT_B, SHOE_A, SHOE_B, TEA], 384)
    sims = v @ v.T
    assert sims[0, 1] > 0.3 and sims[2, 3] > 0.3
    for same, (i, j) in ((sims[0, 1], (0, 2)), (sims[2, 3], (2, 4))):
        assert same > sims[i, j] + 0.2
    # Unrelated texts sit near 0: a few shared hash coordinates at most.
    assert abs(sims[0, 4]) < 0.2 and abs(sims[1, 2]) < 0.2


def test_mix_leaves_readable_texts_alone_and_carries_unreadable_ones() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3, 64)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    texts = ["red running shoes", CAT_A, SHOE_A]
    out = mix(texts, t, np.array([0.0, 1.0, 0.5]))
    assert np.array_equal(out[0], t[0])
    assert np.allclose(out[1], hashed_vectors([CAT_A], 64)[0], atol=1e-6)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    # Half and half: equally close to both parts.
    h = hashed_vectors([SHOE_A], 64)[0]
    assert abs(float(out[2] @ t[2]) - float(out[2] @ h)) < 1e-5
    # Weight 0 turns the channel off.
    assert np.array_equal(mix(texts, t, np.array([0.0, 1.0, 0.5]), weight=0.0), t)


def test_text_without_features_keeps_its_transformer_vector() -> None:
    t = np.eye(4, dtype=np.float32)[:1]
    assert np.array_equal(mix(["!!!"], t, np.array([1.0])), t)


class RateToy:
    """A stand-in encoder with the interface of Encoder.encode_with_unk (no model needed)."""

    model_id, dim = "toy", 32

    def __init__(self) -> None:
        self.calls = 0

    def encode_with_unk(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        vecs = np.zeros((len(texts), self.dim), dtype=np.float32)
        vecs[:, 0] = 1.0  # every unreadable text looks the same to this "model"
        unk = np.array([1.0 if any("\u4e00" <= c <= "\u9fff" for c in t) else 0.0 for t in texts])
        return vecs, unk


def test_channel_encoder_changes_the_model_id_and_feeds_the_cache() -> None:
    inner = RateToy()
    enc = ChannelEncoder(inner)
    assert enc.model_id == f"toy+{CHANNEL_ID}" == channel_model_id("toy")
    assert ChannelEncoder(inner, weight=0.5).model_id == f"toy+{CHANNEL_ID}w0.5"
    tier = DictTier()
    cache = EmbeddingCache(enc, tier=tier)
    vecs = cache.get_many([CAT_A, CAT_B, TEA, "red shoes"])
    assert inner.calls == 1
    # The toy maps all Chinese to one vector; the channel separates them again.
    assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2]) + 0.2
    assert np.array_equal(vecs[3], np.eye(32, dtype=np.float32)[0])
    # Stored under the mixed id: a worker without the channel never reads these vectors.
    assert redis_key(enc.model_id, CAT_A) in tier.data
    assert redis_key("toy", CAT_A) not in tier.data


def test_bad_weight_is_rejected() -> None:
    with pytest.raises(ValueError, match="channel weight"):
        ChannelEncoder(RateToy(), weight=1.5)


def test_real_encoder_rates_and_channel_on_chinese() -> None:
    encoder = Encoder(EncoderConfig(device="cpu"))
    texts = [CAT_A, CAT_B, SHOE_A, "red running shoes for women"]
    vecs, unk = encoder.encode_with_unk(texts)
    assert np.array_equal(vecs, encoder.encode(texts))
    assert unk[3] == 0.0 and np.all(unk[:3] > 0.4)
    wrapped = ChannelEncoder(encoder)
    assert wrapped.model_id == f"{encoder.model_id}+{CHANNEL_ID}"
    assert wrapped.device == "cpu" and wrapped.pooling == encoder.pooling
    mixed = wrapped.encode(texts)
    assert np.array_equal(mixed[3], vecs[3])
    # Under the plain model cat food is about as close to shoes as to other cat food.
    gap_before = float(vecs[0] @ vecs[1] - vecs[0] @ vecs[2])
    gap_after = float(mixed[0] @ mixed[1] - mixed[0] @ mixed[2])
    assert gap_after > gap_before + 0.1


def test_docstring_examples() -> None:
    assert doctest.testmod(profiles.embedding.channel).failed == 0


def test_fast_hashing_path_hashes_exactly_the_documented_features() -> None:
    import zlib

    from profiles.embedding.channel import SEED, _hashes

    for text in (CAT_A, SHOE_B, TEA, "PPSU吸管杯 2段", "Nike Air Max 90", "㐀㐁 豈更", ""):
        hashes: list[int] = []
        weights: list[float] = []
        n = _hashes(text, hashes, weights)
        expected = sorted((zlib.crc32(f.encode(), SEED), w) for f, w in features(text))
        assert n == len(expected) and sorted(zip(hashes, weights, strict=True)) == expected
