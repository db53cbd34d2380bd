"""Downstream event payloads built from profiles (contracts in ``schemas/outputs``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from profiles.core.profile import Profile
from profiles.pipeline.feature import Feature

TOP_TAGS_OUT = 10


def profile_updated(
    profile: Profile, half_life_ms: int, now_ms: int, features: Sequence[Feature] = ()
) -> dict[str, Any]:
    """The ``profile_updated`` event; ``event_id`` is deterministic so consumers can dedupe.
    Each feature adds its own fields (:meth:`Feature.describe`).

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
    for feature in features:
        feature.describe(profile, event)
    return event
