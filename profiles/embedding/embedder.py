"""Text vectors for a batch, computed off the event loop.

One call per batch: the texts are deduplicated, looked up in the embedding
cache (process LRU, then Redis), and only the misses reach the model, in one
``encode`` call that sorts them by length and runs in a worker thread so the
event loop keeps consuming the next batch meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from profiles.embedding.cache import EmbeddingCache
from profiles.embedding.profile import EmbeddingConfig


@dataclass
class EncodeStats:
    calls: int = 0
    texts: int = 0
    seconds: float = 0.0
    last_ms: float = 0.0


@dataclass
class Embedder:
    """What the batch updater needs of the encoder: vectors for texts, and the profile config."""

    cache: EmbeddingCache
    config: EmbeddingConfig
    stats: EncodeStats = field(default_factory=EncodeStats)

    async def vectors(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        distinct = list(dict.fromkeys(t for t in texts if t))
        if not distinct:
            return {}
        started = time.perf_counter()
        matrix = await asyncio.to_thread(self.cache.get_many, distinct)
        elapsed = time.perf_counter() - started
        self.stats.calls += 1
        self.stats.texts += len(distinct)
        self.stats.seconds += elapsed
        self.stats.last_ms = elapsed * 1000
        return dict(zip(distinct, matrix, strict=True))
