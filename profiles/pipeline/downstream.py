"""Downstream event payloads built from profiles (contracts in ``schemas/outputs``)."""

from __future__ import annotations

from typing import Any

from profiles.core.profile import Profile
from profiles.recommend.recommender import RecsChange
from profiles.segments.segmenter import SegmentChange

TOP_TAGS_OUT = 10


def profile_updated(
    profile: Profile, half_life_ms: int, now_ms: int, with_vector: bool = False
) -> dict[str, Any]:
    """The ``profile_updated`` event; ``event_id`` is deterministic so consumers can dedupe.

    >>> p = Profile("u1", version=3, last_ts=5, counts={"click": 2})
    >>> e = profile_updated(p, 1000, now_ms=9)
    >>> (e["event_id"], e["counts"], e["rfm"]["frequency"])
    ('u1:3', {'click': 2}, 0)
    """
    event: dict[str, Any] = {
        "type": "profile_updated",
        "schema_version": 1,
        "event_id": f"{profile.user_id}:{profile.version}",
        "user_id": profile.user_id,
        "version": profile.version,
        "ts": profile.last_ts,
        "processed_at": now_ms,
        "top_tags": [list(t) for t in profile.top_tags(TOP_TAGS_OUT, half_life_ms)],
        "rfm": profile.rfm(),
        "counts": dict(sorted(profile.counts.items())),
    }
    if profile.segment is not None:
        event["segment"] = profile.segment
    if profile.embedding is not None:
        event["model"] = profile.embedding.model_id
        vector = profile.embedding.long_term()
        if with_vector and vector is not None:
            event["vector"] = [round(float(x), 6) for x in vector]
    return event


def segment_changed(change: SegmentChange, now_ms: int) -> dict[str, Any]:
    """The ``segment_changed`` event; the id names the profile version that moved."""
    profile = change.profile
    return {
        "type": "segment_changed",
        "schema_version": 1,
        "event_id": f"{profile.user_id}:{profile.version}:segment",
        "user_id": profile.user_id,
        "segment": change.segment,
        "previous": change.previous,
        "model_version": change.model_version,
        "profile_version": profile.version,
        "ts": profile.last_ts,
        "processed_at": now_ms,
    }


def recommendation_event(change: RecsChange, model: str, now_ms: int) -> dict[str, Any]:
    """The ``recommendation`` output event (contract: ``schemas/outputs``); its id names the
    profile version, so a redelivered batch's repeat is recognisable downstream.

    >>> from profiles.recommend.blend import Recommendation
    >>> p = Profile("u1", version=4, last_ts=7)
    >>> r = Recommendation("tea", 0.9, {"source": "popularity", "scope": "global"})
    >>> e = recommendation_event(RecsChange(p, (r,), "first"), "m", now_ms=9)
    >>> e["event_id"], e["items"][0]["rank"], e["items"][0]["product_id"]
    ('u1:4:recs', 1, 'tea')
    """
    profile = change.profile
    return {
        "type": "recommendation",
        "schema_version": 1,
        "event_id": f"{profile.user_id}:{profile.version}:recs",
        "user_id": profile.user_id,
        "profile_version": profile.version,
        "model": model,
        "trigger": change.trigger,
        "ts": profile.last_ts,
        "processed_at": now_ms,
        "items": [
            {
                "product_id": r.product_id,
                "rank": rank,
                "score": round(float(r.score), 6),
                "reason": r.reason,
            }
            for rank, r in enumerate(change.items, start=1)
        ],
    }
