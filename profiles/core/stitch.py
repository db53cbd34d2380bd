"""Identity stitching: an anonymous profile merged into the user's once they are linked.

Anonymous traffic (Segment calls with only an ``anonymousId``) builds a profile keyed
``anon:<anonymousId>`` (:func:`anon_user_id`). When a link (``identify`` / ``alias``, or any
call carrying both ids) ties it to a user, :func:`merge` folds the anonymous profile into the
user's. Every merged quantity is a sum or a min/max, so the result does not depend on where
the handover fell: merging the two profiles equals applying both ids' events to one profile
(up to lateness and the bounded id windows), which is what the tests check against the oracle.

The merge is fenced: the user keeps the merged anonymous ids in ``Profile.merged``, written in
the same atomic profile write, so a redelivered merge is a no-op. The anonymous profile's
offset fences move to the user under ``<input partition>~<anon id>``: ``apply`` fences the
anonymous id's later (forwarded) events under that key, apart from the user's own offsets.

>>> from profiles.core.config import ProfileConfig
>>> user = Profile("u1", counts={"click": 2}, orders=1, spend_cents={"USD": 500})
>>> anon = Profile(anon_user_id("a9"), counts={"click": 1, "search": 1}, fences={"t:0": 7})
>>> merge(user, anon, ProfileConfig()), merge(user, anon, ProfileConfig())
(True, False)
>>> user.counts, user.fences, user.merged
({'click': 3, 'search': 1}, {'t:0~anon:a9': 7}, ['anon:a9'])
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from profiles.core.config import ProfileConfig
from profiles.core.corrections import merge_ledgers
from profiles.core.profile import MAX_SUM, Profile, _prune_tags
from schemas import segment_identity

__all__ = [
    "ANON_PREFIX",
    "anon_user_id",
    "cascade_erasures",
    "is_anonymous",
    "merge",
    "merge_id",
    "merged_event",
]

#: Anonymous profiles live in the user id space under this prefix (no real id starts with it:
#: ``schemas/segment_identity.py`` refuses a ``userId`` that does).
ANON_PREFIX: Final = segment_identity.ANON_PREFIX


def anon_user_id(anonymous_id: str) -> str:
    """The profile id of an anonymous visitor.

    >>> anon_user_id("3f2a")
    'anon:3f2a'
    """
    return ANON_PREFIX + anonymous_id


def is_anonymous(user_id: str) -> bool:
    return user_id.startswith(ANON_PREFIX)


def merge_id(anon_id: str, user_id: str) -> str:
    """Deterministic id of one merge: a redelivered link produces the same one.

    >>> merge_id("anon:a", "u") == merge_id("anon:a", "u") != merge_id("anon:b", "u")
    True
    """
    digest = hashlib.sha256(f"{anon_id}\x00{user_id}".encode()).hexdigest()
    return f"merge-{digest[:32]}"


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _merge_tags(user: Profile, anon: Profile, half_life_ms: int) -> None:
    """Sum the two anchored tag sets on the later anchor (same event-time decay)."""
    if not anon.tags or anon.tag_anchor is None:
        return
    if user.tag_anchor is None:
        user.tag_anchor, user.tags = anon.tag_anchor, dict(anon.tags)
        return
    anchor = max(user.tag_anchor, anon.tag_anchor)
    # A score s anchored at a reads s * 2**(-(T - a)/h): on anchor A it is s * 2**(-(A - a)/h).
    mine = 2.0 ** (-(anchor - user.tag_anchor) / half_life_ms)
    theirs = 2.0 ** (-(anchor - anon.tag_anchor) / half_life_ms)
    tags = {tag: score * mine for tag, score in user.tags.items()}
    for tag, score in anon.tags.items():
        tags[tag] = tags.get(tag, 0.0) + score * theirs
    user.tag_anchor, user.tags = anchor, tags


def _union_recent(older: list[str], newer: list[str], keep: int) -> list[str]:
    seen = set(newer)
    merged = [i for i in older if i not in seen] + newer
    return merged[max(0, len(merged) - keep) :]


def merge(user: Profile, anon: Profile, config: ProfileConfig) -> bool:
    """Fold ``anon`` into ``user`` in place; False (and nothing changed) if already merged.

    The caller bumps ``user.version`` and persists when it returns True.
    """
    if anon.user_id == user.user_id or anon.user_id in user.merged:
        return False
    for kind, n in anon.counts.items():
        user.counts[kind] = user.counts.get(kind, 0) + n
    user.first_ts = _min(user.first_ts, anon.first_ts)
    user.last_ts = _max(user.last_ts, anon.last_ts)
    user.orders += anon.orders
    user.items_bought = min(MAX_SUM, user.items_bought + anon.items_bought)
    for cur, cents in anon.spend_cents.items():
        user.spend_cents[cur] = min(MAX_SUM, user.spend_cents.get(cur, 0) + cents)
    user.first_purchase_ts = _min(user.first_purchase_ts, anon.first_purchase_ts)
    user.last_purchase_ts = _max(user.last_purchase_ts, anon.last_purchase_ts)
    _merge_tags(user, anon, config.half_life_ms)
    merge_ledgers(user, anon, config.half_life_ms)
    _prune_tags(user, config.top_tags)
    # The anonymous session came first (it logged in), so its items are the older ones.
    user.purchased = _union_recent(anon.purchased, user.purchased, config.purchased_items)
    user.recent_ids = _union_recent(anon.recent_ids, user.recent_ids, config.recent_ids)
    for key, offset in anon.fences.items():
        moved = f"{key}~{anon.user_id}"
        user.fences[moved] = max(offset, user.fences.get(moved, -1))
    user.merged.append(anon.user_id)
    return True


def merged_event(user: Profile, anon_id: str, ts: int) -> dict[str, Any]:
    """The ``profile_merged`` output event (contract: ``schemas/outputs/profile_merged``).

    >>> merged_event(Profile("u1", version=4), "anon:a", 10)["merge_id"][:6]
    'merge-'
    """
    return {
        "type": "profile_merged",
        "schema_version": 1,
        "merge_id": merge_id(anon_id, user.user_id),
        "user_id": user.user_id,
        "anonymous_profile": anon_id,
        "version": user.version,
        "ts": ts,
    }


def cascade_erasures(user: Profile, erasure: dict[str, Any]) -> list[dict[str, Any]]:
    """The erasures of the anonymous profiles merged into ``user``, owed by its erasure.

    The sealed anonymous profiles (and their link) hold the same person's data, so each gets
    a ``user_erasure`` of its own, routed to its owner; the event ids derive from the user's
    erasure, so a redelivered erasure sends the same ones (deduplicated there).

    >>> user = Profile("u1", merged=["anon:a"])
    >>> e = {"event_id": "x1", "type": "user_erasure", "schema_version": 1, "user_id": "u1",
    ...      "ts": 9, "requested_by": "dpo"}
    >>> [(c["user_id"], c["event_id"][:8], c["requested_by"]) for c in cascade_erasures(user, e)]
    [('anon:a', 'erase-an', 'dpo')]
    """
    out = []
    for anon in user.merged:
        digest = hashlib.sha256(f"{erasure['event_id']}\x00{anon}".encode()).hexdigest()
        out.append({**erasure, "user_id": anon, "event_id": f"erase-anon-{digest[:24]}"})
    return out
