"""A user's embedding profile: long-term, short-term and several interest vectors.

Stored next to the behaviour profile (same Redis hash, same version check) and
tagged with the model that made its vectors: vectors of different models are
never mixed (see :meth:`EmbeddingProfile.load`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from profiles.embedding.codec import Format, pack, unpack
from profiles.embedding.estimators import DecayedMean, Interest, Interests, VecIn, decode_vec


@dataclass(frozen=True)
class EmbeddingConfig:
    """Memories of the three estimators (event time, ms) and the interest clustering."""

    model_id: str
    dim: int
    long_half_life_ms: int = 30 * 86_400_000
    short_half_life_ms: int = 30 * 60_000
    interests: int = 5
    join_threshold: float = 0.5
    #: How the vectors are stored (``profiles/embedding/codec.py``); every format loads.
    storage: Format = "f32"


class EmbeddingProfile:
    """Three estimators fed the same event vectors with the same weights."""

    def __init__(self, config: EmbeddingConfig) -> None:
        self.model_id = config.model_id
        self.dim = config.dim
        self.storage: Format = config.storage
        self.long = DecayedMean(config.long_half_life_ms)
        self.short = DecayedMean(config.short_half_life_ms)
        self.interests = Interests(
            config.long_half_life_ms, k_max=config.interests, join_threshold=config.join_threshold
        )

    def learn_one(
        self, vec: np.ndarray, weight: float, ts: int, tags: Sequence[tuple[str, float]]
    ) -> None:
        self.long.learn_one(vec, weight, ts)
        self.short.learn_one(vec, weight, ts)
        self.interests.learn_one(vec, weight, ts, tags)

    def long_term(self) -> np.ndarray | None:
        return self.long.vector()

    def short_term(self) -> np.ndarray | None:
        return self.short.vector()

    def interest_list(self) -> list[Interest]:
        return self.interests.interests()

    def to_bytes(self, storage: Format | None = None) -> bytes:
        """The stored blob, in ``storage`` (default: the config's format)."""
        return pack(
            lambda vec: {
                "model": self.model_id,
                "dim": self.dim,
                "long": self.long.to_dict(vec),
                "short": self.short.to_dict(vec),
                "interests": self.interests.to_dict(vec),
            },
            self.dim,
            storage or self.storage,
        )

    @staticmethod
    def stored_model(blob: bytes) -> tuple[str, int]:
        """The model id and dimension a stored blob names."""
        state, _ = unpack(blob)
        return str(state["model"]), int(state["dim"])

    @classmethod
    def load(cls, blob: bytes | None, config: EmbeddingConfig) -> tuple[EmbeddingProfile, bool]:
        """The stored profile, or a fresh one; the flag says a model change discarded it."""
        fresh = cls(config)
        if not blob:
            return fresh, False
        state, rows = unpack(blob)
        if state["model"] != config.model_id or state["dim"] != config.dim:
            return fresh, True
        vec: VecIn = decode_vec if rows.size == 0 else lambda i: rows[int(i)]
        fresh.long = DecayedMean.from_dict(state["long"], vec)
        fresh.short = DecayedMean.from_dict(state["short"], vec)
        fresh.interests = Interests.from_dict(state["interests"], vec)
        return fresh, False

    def summary(self) -> dict[str, Any]:
        """What the API shows: model, dimension, interest weights and tags (no raw text)."""
        return {
            "model": self.model_id,
            "dim": self.dim,
            "interests": [
                {
                    "weight": round(i.weight, 6),
                    "events": i.events,
                    "last_ts": i.last_ts,
                    "tags": [[t, round(w, 6)] for t, w in i.tags],
                }
                for i in self.interest_list()
            ],
        }
