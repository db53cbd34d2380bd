"""The records of the identity-stitching handover, as they travel in the routed topic.

README "Identity stitching" has the design; :mod:`profiles.core.stitch` the merge itself.
A link (``identify`` / ``alias``, or a call with both ids) becomes, at ingest
(:func:`split_link`):

* a ``seal`` record to the anonymous profile's owner: applied in that profile's own fenced,
  versioned write, it marks the profile ``merged_into`` the user (first link wins);
* a ``traits`` record to the user's owner when the identify kept traits.

When the seal applies, the anonymous owner sends a ``merge`` record carrying the sealed
profile (:func:`merge_record`, id :func:`~profiles.core.stitch.merge_id`) to the user's owner,
and forwards every later event of the anonymous id there (:func:`forward`): the user applies
them fenced under ``<input partition>~<anon id>`` (``via`` names the anonymous profile). A
redelivered seal re-sends the identical merge, which the user's ``merged`` fences.

These kinds never come from the input: ``decode`` knows none of them, and ingest drops the
fields only the handover sets (:data:`INTERNAL_FIELDS`) from every input event.

>>> seal, traits = split_link({"type": "identify", "event_id": "m1", "user_id": "u1",
...     "anonymous_id": "anon:a", "ts": 5, "traits": {"plan": "pro", "email": "x"}},
...     frozenset({"plan"}))
>>> seal["type"], seal["user_id"], seal["into"], traits["traits"]
('seal', 'anon:a', 'u1', {'plan': 'pro'})
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Final

import orjson

from profiles.core.profile import Profile, Record
from profiles.core.stitch import cascade_erasures, merge_id
from schemas.segment_identity import TraitPolicy, kept_traits

__all__ = [
    "CONTROL_KINDS",
    "INTERNAL_FIELDS",
    "MERGE",
    "SEAL",
    "TRAITS",
    "cascade_records",
    "fence_key",
    "forward",
    "merge_record",
    "snapshot_of",
    "split_link",
    "vectors_of",
]

SEAL: Final = "seal"
MERGE: Final = "merge"
TRAITS: Final = "traits"
#: Routed kinds the updater handles itself (not events of a profile's own).
CONTROL_KINDS: Final = frozenset({SEAL, MERGE, TRAITS})
#: Fields only the handover sets; ingest removes them from input events.
INTERNAL_FIELDS: Final = ("via", "cascade", "into", "snapshot", "vectors")


def _link_event_id(event_id: str) -> str:
    return "link-" + hashlib.sha256(event_id.encode()).hexdigest()[:24]


def split_link(
    event: dict[str, Any], keep: frozenset[str] | TraitPolicy | None = None
) -> list[dict[str, Any]]:
    """What ingest routes for one validated event: the event itself (not for an ``identify``,
    which carries no interaction), a ``seal`` when it names an anonymous profile, and a
    ``traits`` record when an ``identify`` keeps traits (``keep``: the policy or its names)."""
    anon = event.pop("anonymous_id", None)
    is_identify = event["type"] == "identify"
    raw_traits = event.pop("traits", None) if is_identify else None
    out = [] if is_identify else [event]
    user, ts = event["user_id"], event["ts"]
    if isinstance(anon, str) and anon != user:
        out.append(
            {
                "type": SEAL,
                "event_id": event["event_id"] if is_identify else _link_event_id(event["event_id"]),
                "schema_version": 1,
                "user_id": anon,
                "into": user,
                "ts": ts,
            }
        )
    if raw_traits and keep:
        policy = keep if isinstance(keep, TraitPolicy) else TraitPolicy(keep=keep)
        traits = kept_traits({"traits": raw_traits}, policy)
        if traits:
            out.append(
                {
                    "type": TRAITS,
                    "event_id": event["event_id"],
                    "schema_version": 1,
                    "user_id": user,
                    "traits": traits,
                    "ts": ts,
                }
            )
    return out


def snapshot_of(event: dict[str, Any]) -> Profile:
    """The sealed anonymous profile a ``merge`` record carries."""
    return Profile.from_bytes(event["anonymous_id"], 0, orjson.dumps(event["snapshot"]))


def vectors_of(event: dict[str, Any]) -> bytes | None:
    """The sealed anonymous profile's stored vectors, when the ``merge`` record carries any."""
    blob = event.get("vectors")
    return None if blob is None else base64.b64decode(blob)


def merge_record(seal: Record, anon: Profile) -> Record:
    """The ``merge`` record the anonymous owner sends the user's owner for ``seal``: the same
    bytes whenever the same sealed profile is sent again (a redelivered seal)."""
    into = anon.merged_into
    assert into is not None, "only a sealed profile is merged"
    event = {
        "type": MERGE,
        "event_id": merge_id(anon.user_id, into),
        "schema_version": 1,
        "user_id": into,
        "anonymous_id": anon.user_id,
        "ts": seal.event["ts"],
        "snapshot": orjson.loads(anon.to_bytes()),
    }
    if anon.embedding is not None and anon.embedding.long_term() is not None:
        event["vectors"] = base64.b64encode(anon.embedding.to_bytes()).decode()
    return Record(seal.source, seal.offset, event, seal.produced_ms)


def forward(record: Record, into: str) -> Record:
    """An event of a sealed anonymous profile, for the user it was merged into."""
    event = {**record.event, "user_id": into, "via": record.event["user_id"]}
    return Record(record.source, record.offset, event, record.produced_ms)


def cascade_records(user: Profile, erasure: Record) -> list[Record]:
    """The erasures of the anonymous profiles merged into ``user``, owed by its ``erasure``."""
    return [
        Record(erasure.source, erasure.offset, {**e, "cascade": True}, erasure.produced_ms)
        for e in cascade_erasures(user, erasure.event)
    ]


def fence_key(record: Record) -> str:
    """The fence of a record applied by key: a cascaded erasure has one of its own (its
    offset is the user's erasure's, unrelated to the anonymous profile's own offsets)."""
    key = record.source.key
    return f"{key}~cascade" if record.event.get("cascade") else key
