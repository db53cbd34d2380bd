"""Merging an anonymous profile's vectors into the user's (identity stitching).

Each decayed mean keeps ``S = Σ w·2^{-(T-t)/h}·v`` and ``Z = Σ w·2^{-(T-t)/h}``: brought to
the later of the two ``T`` and summed, the merge weighs each side by its evidence (its decayed
event weight) and equals one estimator fed both sides' events. Interests (clusters) are not
merged event by event: the user keeps theirs, or takes the anonymous side's when they have
none (a first login after anonymous browsing).

>>> import numpy as np
>>> a, b, both = DecayedMean(1000), DecayedMean(1000), DecayedMean(1000)
>>> a.learn_one([1.0, 0.0], 1.0, ts=0); b.learn_one([0.0, 1.0], 1.0, ts=1000)
>>> both.learn_one([1.0, 0.0], 1.0, ts=0); both.learn_one([0.0, 1.0], 1.0, ts=1000)
>>> merge_mean(a, b); bool(np.allclose(a.vector(), both.vector())), a.weight()
(True, 1.5)
"""

from __future__ import annotations

import copy

from profiles.embedding.codec import unpack
from profiles.embedding.estimators import DecayedMean, Interests, VecIn, _decay, decode_vec
from profiles.embedding.profile import EmbeddingProfile

__all__ = ["merge_blob", "merge_embedding", "merge_mean"]


def merge_mean(into: DecayedMean, other: DecayedMean) -> None:
    """Add ``other``'s decayed sums to ``into`` (same half-life), in place."""
    if other._sum is None or other.ts is None:
        return
    if into._sum is None or into.ts is None:
        into._sum, into.ts, into.total = other._sum.copy(), other.ts, other.total
        return
    if into._sum.shape != other._sum.shape:
        raise ValueError("vectors of different dimensions cannot be merged")
    t = max(into.ts, other.ts)
    mine, theirs = _decay(t - into.ts, into.half_life_ms), _decay(t - other.ts, into.half_life_ms)
    into._sum = into._sum * mine + other._sum * theirs
    into.total = into.total * mine + other.total * theirs
    into.ts = t


def merge_embedding(into: EmbeddingProfile, other: EmbeddingProfile) -> None:
    """Merge long- and short-term vectors; interests: see the module docstring."""
    if into.model_id != other.model_id or into.dim != other.dim:
        return  # vectors of another model mean nothing here (re-embedded on the next events)
    merge_mean(into.long, other.long)
    merge_mean(into.short, other.short)
    if not into.interests.interests() and other.interests.interests():
        into.interests = other.interests


def merge_blob(into: EmbeddingProfile, blob: bytes) -> bool:
    """Merge the stored vectors ``blob`` (an anonymous profile's, carried by the handover's
    ``merge`` record) into ``into``; False when they are another model's (dropped)."""
    state, rows = unpack(blob)
    if state["model"] != into.model_id or state["dim"] != into.dim:
        return False
    vec: VecIn = decode_vec if rows.size == 0 else lambda i: rows[int(i)]
    other = copy.copy(into)  # the same model and storage; its estimators replaced below
    other.long = DecayedMean.from_dict(state["long"], vec)
    other.short = DecayedMean.from_dict(state["short"], vec)
    other.interests = Interests.from_dict(state["interests"], vec)
    merge_embedding(into, other)
    return True
