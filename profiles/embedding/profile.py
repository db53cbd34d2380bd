"""A user's embedding profile: long-term, short-term and several interest vectors.

Stored next to the behaviour profile (same Redis hash, same version check) and
tagged with the model that made its vectors: vectors of different models are
never mixed (see :meth:`EmbeddingProfile.load`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from profiles.embedding.codec import Format, pack, unpack
from profiles.embedding.estimators import (
    DecayedMean,
    Interest,
    Interests,
    VecIn,
    _check_tags,
    _check_times,
    _check_weights,
    _units,
    decode_vec,
)


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
        self._long = DecayedMean(config.long_half_life_ms)
        self._short = DecayedMean(config.short_half_life_ms)
        self._interests = Interests(
            config.long_half_life_ms, k_max=config.interests, join_threshold=config.join_threshold
        )
        # Events taken by :meth:`add`, learnt in one :meth:`learn_many` when anything reads.
        self._pending: list[tuple[np.ndarray, float, int, Sequence[tuple[str, float]]]] = []

    @property
    def long(self) -> DecayedMean:
        self.flush()
        return self._long

    @long.setter
    def long(self, value: DecayedMean) -> None:
        self.flush()
        self._long = value

    @property
    def short(self) -> DecayedMean:
        self.flush()
        return self._short

    @short.setter
    def short(self, value: DecayedMean) -> None:
        self.flush()
        self._short = value

    @property
    def interests(self) -> Interests:
        self.flush()
        return self._interests

    @interests.setter
    def interests(self, value: Interests) -> None:
        self.flush()
        self._interests = value

    def learn_one(
        self, vec: np.ndarray, weight: float, ts: int, tags: Sequence[tuple[str, float]]
    ) -> None:
        """Learn one event now (the reference the batch path is tested against)."""
        self.flush()
        self._long.learn_one(vec, weight, ts)
        self._short.learn_one(vec, weight, ts)
        self._interests.learn_one(vec, weight, ts, tags)

    def learn_many(
        self,
        vectors: np.ndarray | Sequence[np.ndarray],
        weights: Sequence[float],
        timestamps: Sequence[int],
        tags: Sequence[Sequence[tuple[str, float]]],
    ) -> None:
        """Learn events in order, as :meth:`learn_one` over each would (one matrix update
        for the means, one tight loop for the interests)."""
        self.flush()
        self._learn_many(vectors, weights, timestamps, tags)

    def add(
        self, vec: np.ndarray, weight: float, ts: int, tags: Sequence[tuple[str, float]]
    ) -> None:
        """Queue one event for the batch path: learnt, in order, before any read of the state.

        Shape and weight are checked here; finiteness and a zero vector raise when the
        queue is learnt (a vector from :func:`profiles.embedding.text.combine` is unit);
        ``vec`` is read then, not copied now, so it must not change in between.
        """
        if np.shape(vec) != (self.dim,):
            raise ValueError(f"vector has shape {np.shape(vec)}, profile has dim {self.dim}")
        if not (math.isfinite(weight) and weight >= 0.0):
            raise ValueError(f"weight must be finite and >= 0, got {weight!r}")
        self._pending.append((vec, float(weight), int(ts), tags))

    def flush(self) -> None:
        """Learn the queued events (a no-op when none are)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._learn_many(
            np.stack([p[0] for p in pending]),
            [p[1] for p in pending],
            [p[2] for p in pending],
            [p[3] for p in pending],
        )

    def _learn_many(
        self,
        vectors: np.ndarray | Sequence[np.ndarray],
        weights: Sequence[float],
        timestamps: Sequence[int],
        tags: Sequence[Sequence[tuple[str, float]]],
    ) -> None:
        # Checked and normalised once for the three estimators: nothing changes when any
        # input is bad.
        units = _units(vectors, self.dim)
        n = units.shape[0]
        w = _check_weights(weights, n)
        ts = _check_times(timestamps, n)
        tag_lists = _check_tags(tags, n)
        self._interests._learn_units(units, w, ts, tag_lists)
        self._long._learn_units(units, w, ts)
        self._short._learn_units(units, w, ts)

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
        fresh._long = DecayedMean.from_dict(state["long"], vec)
        fresh._short = DecayedMean.from_dict(state["short"], vec)
        fresh._interests = Interests.from_dict(state["interests"], vec)
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
