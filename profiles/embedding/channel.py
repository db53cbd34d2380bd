"""A hashed text channel: what a text says when the encoder cannot read its script.

The bundled all-MiniLM-L6-v2 maps most Chinese characters to ``[UNK]``, so a Chinese title's
transformer vector says little beyond its brand letters and numbers. This channel gives every
text a second vector that any script has: its features (character unigrams and bigrams of
Han runs, lower-cased Latin/digit words) hashed with a fixed seed onto a sparse signed
projection of the vector width (each feature adds ``±w`` on :data:`NONZEROS` coordinates, a
sparse Johnson-Lindenstrauss projection of the hashed bag of features), then unit-normalised.
Two texts that share words share coordinates, so their cosine is about the weighted share of
features they have in common; unrelated texts are near 0.

The transformer vector ``t`` and the channel vector ``h`` are mixed per text by the
encoder's unknown-token rate ``u`` of that text (share of its content tokens that are
``[UNK]``)::

    v = normalise((1 - a) * t + a * h),   a = CHANNEL_WEIGHT * u

so a text the encoder reads fully (``u = 0``, most English) keeps its transformer vector
unchanged, and a Chinese title (``u`` around 0.7 under the default model) is carried mostly
by its words. With a Chinese or multilingual model ``u`` is about 0 and the channel is idle.

Everything is deterministic (``zlib.crc32`` and integer mixing, no process-salted ``hash``),
so every worker, the item index and the offline evaluation compute the same vectors, and the
mixed vectors carry their own model id (:data:`CHANNEL_ID` appended to the encoder's), so
they never mix with unmixed ones in a cache or a profile.

>>> texts = ["耐克 跑步鞋 | 运动户外", "阿迪达斯 跑步鞋 | 运动户外", "明前 乌龙茶 | 食品"]
>>> h = hashed_vectors(texts, 384)
>>> bool(h[0] @ h[1] > 0.4 > 0.1 > h[0] @ h[2])
True
"""

from __future__ import annotations

import array
import re
import zlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np

__all__ = [
    "CHANNEL_ID",
    "CHANNEL_WEIGHT",
    "ChannelEncoder",
    "channel_model_id",
    "features",
    "hashed_vectors",
    "mix",
]

#: Appended to the encoder's model id; bump it whenever features, hashing or weights change.
CHANNEL_ID = "hc1"

#: ``a = CHANNEL_WEIGHT * unk_rate``: the channel's share for a text the encoder cannot read.
CHANNEL_WEIGHT = 1.0

#: Signed coordinates per feature: fewer collide more often, more cost more per feature.
NONZEROS = 4

#: Fixed seed of the projection (part of CHANNEL_ID: changing it changes every vector).
SEED = 0x5EED_0001

#: Feature weights: a bigram says more than one character (猫 is in 猫粮, 猫砂, 猫抓板).
UNIGRAM_WEIGHT = 0.5
BIGRAM_WEIGHT = 1.0
WORD_WEIGHT = 1.0

# Han ideographs (CJK unified + extension A + compatibility), or Latin/digit words.
_TOKENS = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)|([0-9a-z]+)")

_U32 = np.uint32
_MUR1 = _U32(0x85EBCA6B)
_MUR2 = _U32(0xC2B2AE35)
# One constant per draw: multiples of the 32-bit golden ratio.
_DRAWS = np.array([(j * 0x9E3779B9) & 0xFFFFFFFF for j in range(1, NONZEROS + 1)], dtype=np.uint32)


def features(text: str) -> list[tuple[str, float]]:
    """``(feature, weight)`` pairs of ``text``.

    >>> features("PPSU吸管杯 2段")
    [('ppsu', 1.0), ('吸', 0.5), ('吸管', 1.0), ('管', 0.5), ('管杯', 1.0), ('杯', 0.5), \
('2', 1.0), ('段', 0.5)]
    """
    out: list[tuple[str, float]] = []
    for han, word in _TOKENS.findall(text.lower()):
        if word:
            out.append((word, WORD_WEIGHT))
            continue
        for i, ch in enumerate(han):
            out.append((ch, UNIGRAM_WEIGHT))
            if i + 1 < len(han):
                out.append((han[i : i + 2], BIGRAM_WEIGHT))
    return out


def _hashes(text: str, hashes: list[int], weights: list[float]) -> int:
    """Append the crc32 of each of :func:`features` (same multiset) and its weight; return
    how many. The hot path of the channel: no feature strings are built for Han runs."""
    crc, seed = zlib.crc32, SEED
    start = len(hashes)
    for han, word in _TOKENS.findall(text.lower()):
        if word:
            hashes.append(crc(word.encode("ascii"), seed))
            weights.append(WORD_WEIGHT)
            continue
        # Every character matched above is 3 bytes in UTF-8 (all in the BMP, above U+0800).
        raw = han.encode("utf-8")
        n = len(han)
        hashes.extend([crc(raw[i : i + 3], seed) for i in range(0, 3 * n, 3)])
        hashes.extend([crc(raw[i : i + 6], seed) for i in range(0, 3 * n - 3, 3)])
        weights.extend([UNIGRAM_WEIGHT] * n + [BIGRAM_WEIGHT] * (n - 1))
    return len(hashes) - start


def hashed_vectors(texts: Sequence[str], dim: int) -> np.ndarray:
    """``(len(texts), dim)`` float32 unit rows; a text without features gets a zero row."""
    hashes: list[int] = []
    weights: list[float] = []
    counts = [_hashes(text, hashes, weights) for text in texts]
    if not hashes:
        return np.zeros((len(texts), dim), dtype=np.float32)
    # NONZEROS (position, sign) draws per feature: murmur3's 32-bit finaliser of the crc32
    # xor a per-draw constant, taken mod 2 * dim (slot = 2 * position + sign). Plain uint32
    # arithmetic, so every numpy version and machine gives the same draws.
    with np.errstate(over="ignore"):
        z = np.frombuffer(array.array("I", hashes), dtype=np.uint32)[:, None] ^ _DRAWS
        z ^= z >> _U32(16)
        z *= _MUR1
        z ^= z >> _U32(13)
        z *= _MUR2
        z ^= z >> _U32(16)
    slot = (z % _U32(2 * dim)).astype(np.int64)
    rows = np.repeat(np.arange(len(texts), dtype=np.int64), counts)
    slot += rows[:, None] * (2 * dim)
    w = np.repeat(np.asarray(weights), NONZEROS)
    acc = np.bincount(slot.ravel(), weights=w, minlength=len(texts) * 2 * dim)
    acc = acc.reshape(len(texts), dim, 2)
    out = acc[:, :, 0] - acc[:, :, 1]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out.astype(np.float32)


def mix(
    texts: Sequence[str],
    vectors: np.ndarray,
    unk_rates: np.ndarray,
    weight: float = CHANNEL_WEIGHT,
) -> np.ndarray:
    """Transformer rows mixed with the channel by each text's unknown-token rate (unit rows).

    Texts with ``unk_rate == 0`` come back unchanged (and are not hashed at all).
    """
    out = np.array(vectors, dtype=np.float32, copy=True)
    a = np.clip(weight * np.asarray(unk_rates, dtype=np.float64), 0.0, 1.0)
    todo = np.flatnonzero(a > 0)
    if todo.size == 0:
        return out
    hashed = hashed_vectors([texts[int(i)] for i in todo], out.shape[1]).astype(np.float64)
    share = a[todo, None]
    mixed = (1.0 - share) * out[todo].astype(np.float64) + share * hashed
    norms = np.linalg.norm(mixed, axis=1, keepdims=True)
    # A zero mix (no features and a = 1) keeps the transformer's row rather than a zero.
    keep = norms[:, 0] > 0
    out[todo[keep]] = (mixed[keep] / norms[keep]).astype(np.float32)
    return out


def channel_model_id(model_id: str, weight: float = CHANNEL_WEIGHT) -> str:
    """The id of ``model_id``'s vectors mixed with the channel at ``weight``.

    >>> channel_model_id("all-MiniLM-L6-v2"), channel_model_id("all-MiniLM-L6-v2", 0.5)
    ('all-MiniLM-L6-v2+hc1', 'all-MiniLM-L6-v2+hc1w0.5')
    """
    suffix = CHANNEL_ID if weight == CHANNEL_WEIGHT else f"{CHANNEL_ID}w{weight:g}"
    return f"{model_id}+{suffix}"


class RateEncoder(Protocol):
    """An encoder that also says, per text, the share of its tokens that were unknown."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode_with_unk(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]: ...


class ChannelEncoder:
    """An encoder whose vectors are :func:`mix`-ed with the hashed channel.

    Fits :class:`~profiles.embedding.cache.TextEncoder`, so the cache, profiles, interests,
    segments and the item index all see the same mixed vectors; other attributes (``device``,
    ``dtype``, ``pooling``, ``last_unk_rate``) are the wrapped encoder's.
    """

    def __init__(self, inner: RateEncoder, weight: float = CHANNEL_WEIGHT) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"channel weight must be in [0, 1], got {weight}")
        self.inner = inner
        self.weight = weight
        self.model_id = channel_model_id(inner.model_id, weight)
        self.dim = int(inner.dim)

    def __getattr__(self, name: str) -> object:
        # Only reached for attributes this class lacks: describe the wrapped encoder.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors, unk = self.inner.encode_with_unk(texts)
        return mix(texts, vectors, unk, self.weight)
