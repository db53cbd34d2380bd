"""Two-tier cache of text embeddings: an in-process LRU, then an optional shared tier.

Product titles repeat across users and events, so most encodes are repeats. A lookup tries
the LRU, then the tier with one ``mget``, and only then the encoder — once per call, for
all the remaining texts together — and writes the new vectors back with one ``mset``.

>>> import numpy as np
>>> class Toy:
...     model_id, dim = "toy", 2
...     def encode(self, texts):
...         return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)
>>> tier = DictTier()
>>> cache = EmbeddingCache(Toy(), capacity=10, tier=tier)
>>> cache.get_many(["ab", "abc", "ab"]).tolist()
[[2.0, 1.0], [3.0, 1.0], [2.0, 1.0]]
>>> (cache.hits, cache.tier_hits, cache.misses)
(0, 0, 2)
>>> cache.get_many(["abc"]).tolist(), cache.hits
([[3.0, 1.0]], 1)
>>> fresh = EmbeddingCache(Toy(), tier=tier)  # e.g. another worker sharing the tier
>>> fresh.get_many(["ab"]).tolist(), fresh.tier_hits, fresh.misses
([[2.0, 1.0]], 1, 0)
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from profiles.core.errors import Outage

__all__ = ["DictTier", "EmbeddingCache", "TextEncoder", "VectorTier", "redis_key"]

log = logging.getLogger(__name__)

_WIRE = np.dtype("<f4")


class TextEncoder(Protocol):
    """What the cache needs from an encoder (``profiles.encoder.encoder.Encoder`` fits)."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class VectorTier(Protocol):
    """A shared key -> bytes store behind the LRU (e.g. Redis); values are raw ``<f4`` bytes."""

    def mget(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def mset(self, items: Mapping[str, bytes]) -> None: ...


class DictTier:
    """In-memory :class:`VectorTier`, for tests and single-process runs.

    >>> t = DictTier()
    >>> t.mset({"a": b"1"})
    >>> t.mget(["a", "b"])
    [b'1', None]
    """

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.mget_calls = 0
        self.mset_calls = 0

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        self.mget_calls += 1
        return [self.data.get(k) for k in keys]

    def mset(self, items: Mapping[str, bytes]) -> None:
        self.mset_calls += 1
        self.data.update(items)


def redis_key(model_id: str, text: str) -> str:
    """Tier key of ``text``'s vector under ``model_id``.

    No ``{hash tag}``: on a Redis Cluster a tag would pin every vector of a model to one
    slot, so one shard would hold the whole cache and serve all its reads. Plain keys spread
    over the slots; a cluster tier splits its ``mget`` per slot instead.

    >>> redis_key("all-MiniLM-L6-v2", "red shoes")
    'emb:all-MiniLM-L6-v2:e203707aff4c3bf8a65bd927ad9d04f9af10de26'
    """
    return _key(model_id, _digest(text))


def _key(model_id: str, digest: str) -> str:
    return f"emb:{model_id}:{digest}"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


class EmbeddingCache:
    """LRU of ``capacity`` vectors keyed by (model_id, sha1(text)), over an optional tier.

    Counters count distinct texts per call: ``hits`` from the LRU, ``tier_hits`` from the
    tier, ``misses`` sent to the encoder. Tier failures are logged and counted in
    ``tier_errors`` and the call falls through to the encoder: the cache only saves work.
    Not thread-safe; meant for the single worker thread that owns the encoder.
    """

    def __init__(
        self, encoder_like: TextEncoder, capacity: int = 200_000, tier: VectorTier | None = None
    ) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.encoder = encoder_like
        self.capacity = capacity
        self.tier = tier
        self.model_id = encoder_like.model_id
        self.dim = int(encoder_like.dim)
        # The cache belongs to one encoder, so the sha1 alone keys it; model_id is implied.
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.tier_hits = 0
        self.misses = 0
        self.tier_errors = 0

    def __len__(self) -> int:
        return len(self._lru)

    def get_many(self, texts: Sequence[str]) -> np.ndarray:
        """Return ``(len(texts), dim)`` float32 vectors, row i for ``texts[i]``."""
        index: dict[str, int] = {}
        rows = [index.setdefault(t, len(index)) for t in texts]
        distinct = list(index)
        digests = [_digest(t) for t in distinct]
        out = np.empty((len(distinct), self.dim), dtype=np.float32)

        missing: list[int] = []
        for i, key in enumerate(digests):
            vec = self._lru.get(key)
            if vec is None:
                missing.append(i)
            else:
                self._lru.move_to_end(key)
                out[i] = vec
        self.hits += len(distinct) - len(missing)

        if missing and self.tier is not None:
            missing = self._from_tier(missing, digests, out)

        if missing:
            self.misses += len(missing)
            fresh = np.asarray(
                self.encoder.encode([distinct[i] for i in missing]), dtype=np.float32
            )
            if fresh.shape != (len(missing), self.dim):
                raise ValueError(
                    f"encoder returned shape {fresh.shape}, expected {(len(missing), self.dim)}"
                )
            out[missing] = fresh
            for i in missing:
                self._remember(digests[i], out[i])
            if self.tier is not None:
                items = {
                    _key(self.model_id, digests[i]): out[i].astype(_WIRE).tobytes() for i in missing
                }
                try:
                    self.tier.mset(items)
                except Exception as exc:
                    self.tier_errors += 1
                    # An outage is expected and says enough in one line; anything else is a bug.
                    quiet = isinstance(exc, Outage)
                    log.warning("embedding tier mset failed: %s", exc, exc_info=not quiet)
        return out[rows]

    def _from_tier(self, missing: list[int], digests: list[str], out: np.ndarray) -> list[int]:
        assert self.tier is not None
        keys = [_key(self.model_id, digests[i]) for i in missing]
        try:
            blobs = self.tier.mget(keys)
        except Exception as exc:
            self.tier_errors += 1
            quiet = isinstance(exc, Outage)
            log.warning(
                "embedding tier mget failed (%s); encoding instead", exc, exc_info=not quiet
            )
            return missing
        still: list[int] = []
        for i, blob in zip(missing, blobs, strict=True):
            # A blob of the wrong size is another model's or a torn write: re-encode it.
            if blob is None or len(blob) != self.dim * _WIRE.itemsize:
                still.append(i)
                continue
            out[i] = np.frombuffer(blob, dtype=_WIRE)
            self._remember(digests[i], out[i])
        self.tier_hits += len(missing) - len(still)
        return still

    def _remember(self, key: str, vec: np.ndarray) -> None:
        if self.capacity == 0:
            return
        stored = vec.copy()
        stored.flags.writeable = False
        self._lru[key] = stored
        self._lru.move_to_end(key)
        while len(self._lru) > self.capacity:
            self._lru.popitem(last=False)
