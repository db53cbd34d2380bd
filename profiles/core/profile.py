"""A user's behaviour profile and the pure function that applies events to it.

Everything here is deterministic and uses event time only, so replaying a log
gives the same profile as live traffic. Redis and Kafka never appear here.

>>> from profiles.core.config import ProfileConfig
>>> from profiles.core.partition import InputPartition
>>> p = Profile("u1")
>>> e = {"type": "search", "event_id": "e1", "user_id": "u1", "ts": 1000, "query": "q"}
>>> records = [Record(InputPartition("site-events", 0), 5, e)]
>>> out = apply(p, records, ProfileConfig(), lambda ev: (("q", 1.0),))
>>> (out.applied, p.counts, p.fences, p.version)
(1, {'search': 1}, {'site-events:0': 5}, 0)
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import orjson

from profiles.core import corrections
from profiles.core.config import ProfileConfig
from profiles.core.decay import rebase
from profiles.core.partition import InputPartition

if TYPE_CHECKING:
    from profiles.embedding.profile import EmbeddingProfile

#: Every running sum of a profile (spend in cents per currency, items bought) saturates here:
#: 2**53 - 1, the largest integer a double holds exactly (JSON consumers read doubles; RFM
#: divides by 100), far below the 64-bit limit of the serialisation (which raised for a user
#: whose spend passed 2**64 cents, failing every later purchase of theirs). With the schema's
#: bound of 1e9 per order it takes ~90,000 maximal orders to reach it.
MAX_SUM = 2**53 - 1

Tag = tuple[str, float]
EventTagger = Callable[[dict[str, Any]], Sequence[Tag]]
#: A feature's per-event learning step: (profile, event, event time, interest weight, tags).
EventLearner = Callable[["Profile", dict[str, Any], int, float, Sequence[Tag]], None]


@dataclass(frozen=True, slots=True)
class Record:
    """One validated event and where it came from (the offset fence needs both)."""

    source: InputPartition  # the *input* partition (its key names the fence)
    offset: int
    event: dict[str, Any]
    produced_ms: int = 0  # broker timestamp of the input message (for latency metrics only)


@dataclass(slots=True)
class Outcome:
    """What :func:`apply` did with a user's records."""

    applied: int = 0
    fenced: int = 0  # already applied: same source offset seen before (redelivery)
    duplicates: int = 0  # same event_id seen recently at another offset
    late: list[Record] = field(default_factory=list)  # beyond the allowed lateness
    # Applied now or before (fenced): the records item popularity counts (not duplicates).
    counted: list[Record] = field(default_factory=list)
    # Refunds that waited for a purchase that never came (the lateness window or the cap).
    unmatched_refunds: int = 0

    @property
    def changed(self) -> bool:
        return self.applied > 0


@dataclass(slots=True)
class Profile:
    """Per-user state. ``tags`` hold scores anchored at ``tag_anchor`` (see :func:`_add_tags`)."""

    user_id: str
    version: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    orders: int = 0
    items_bought: int = 0
    spend_cents: dict[str, int] = field(default_factory=dict)
    first_purchase_ts: int | None = None
    last_purchase_ts: int | None = None
    tag_anchor: int | None = None
    tags: dict[str, float] = field(default_factory=dict)
    purchased: list[str] = field(default_factory=list)
    fences: dict[str, int] = field(default_factory=dict)
    recent_ids: list[str] = field(default_factory=list)
    # Anonymous profiles merged into this one (``profiles/core/stitch.py``): the merge fence.
    merged: list[str] = field(default_factory=list)
    # The user this anonymous profile was sealed into (``profiles/core/handover.py``): its
    # later events are forwarded there, never applied here.
    merged_into: str | None = None
    # Declared attributes an ``identify`` kept (``schemas/segment_identity.py`` kept_traits).
    traits: dict[str, Any] = field(default_factory=dict)
    # Corrections (``profiles/core/corrections.py``): recent orders by id, for reversal, and
    # refunds waiting for their purchase, by order id.
    ledger: dict[str, Any] = field(default_factory=dict)
    pending: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # State of the profile's features (``profiles/pipeline/feature.py``), by name: each feature
    # owns its own Redis hash fields, so they are loaded and stored apart from ``d``.
    parts: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # Typed views of the built-in features' parts (a new feature needs none: it uses ``parts``).
    @property
    def embedding(self) -> EmbeddingProfile | None:
        """Decoded vectors (``profiles/embedding``); ``embedding_blob`` until decoded."""
        return cast("EmbeddingProfile | None", self.parts.get("embedding"))

    @embedding.setter
    def embedding(self, value: EmbeddingProfile | None) -> None:
        self.parts["embedding"] = value

    @property
    def embedding_blob(self) -> bytes | None:
        return cast("bytes | None", self.parts.get("embedding_blob"))

    @embedding_blob.setter
    def embedding_blob(self, value: bytes | None) -> None:
        self.parts["embedding_blob"] = value

    @property
    def segment(self) -> int | None:
        """Depends on the shared clustering model, not only on the user's events."""
        return cast("int | None", self.parts.get("segment"))

    @segment.setter
    def segment(self, value: int | None) -> None:
        self.parts["segment"] = value

    @property
    def churn(self) -> dict[str, Any] | None:
        """Churn state (level, next check): depends on the clock of the sweep too."""
        return cast("dict[str, Any] | None", self.parts.get("churn"))

    @churn.setter
    def churn(self, value: dict[str, Any] | None) -> None:
        self.parts["churn"] = value

    @property
    def recs(self) -> dict[str, Any] | None:
        """Recommendation throttle state (last list: time, trigger, items)."""
        return cast("dict[str, Any] | None", self.parts.get("recs"))

    @recs.setter
    def recs(self, value: dict[str, Any] | None) -> None:
        self.parts["recs"] = value

    @property
    def recs_vector(self) -> bytes | None:
        """The long-term vector (float16 bytes) the last list was computed from."""
        return cast("bytes | None", self.parts.get("recs_vector"))

    @recs_vector.setter
    def recs_vector(self, value: bytes | None) -> None:
        self.parts["recs_vector"] = value

    def top_tags(self, n: int, half_life_ms: int, as_of: int | None = None) -> list[Tag]:
        """The ``n`` strongest tags with scores decayed to ``as_of`` (default: last event)."""
        if not self.tags or self.tag_anchor is None or self.last_ts is None:
            return []
        when = self.last_ts if as_of is None else as_of
        ranked = heapq.nsmallest(n, self.tags.items(), key=lambda kv: (-kv[1], kv[0]))
        return [
            (tag, round(decayed(score, self.tag_anchor, when, half_life_ms), 6))
            for tag, score in ranked
        ]

    def rfm(self) -> dict[str, Any]:
        """Recency (last purchase time), frequency (orders) and money spent per currency."""
        return {
            "recency_ts": self.last_purchase_ts,
            "frequency": self.orders,
            "monetary": {cur: cents / 100 for cur, cents in sorted(self.spend_cents.items())},
        }

    def to_bytes(self) -> bytes:
        """Canonical serialisation: sorted keys, so equal profiles are equal bytes."""
        state = {name: getattr(self, name) for name in _STORED}
        if self.merged:  # only stitched profiles carry it, so other blobs stay as they were
            state["merged"] = self.merged
        if self.merged_into is not None:
            state["merged_into"] = self.merged_into
        if self.traits:
            state["traits"] = self.traits
        return orjson.dumps(state, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_bytes(cls, user_id: str, version: int, blob: bytes) -> Profile:
        state = orjson.loads(blob)
        return cls(user_id=user_id, version=version, **state)


_STORED = (
    "first_ts",
    "last_ts",
    "counts",
    "orders",
    "items_bought",
    "spend_cents",
    "first_purchase_ts",
    "last_purchase_ts",
    "tag_anchor",
    "tags",
    "purchased",
    "fences",
    "recent_ids",
    "ledger",
    "pending",
)


def apply(
    profile: Profile,
    records: Sequence[Record],
    config: ProfileConfig,
    tagger: EventTagger,
    learners: Sequence[EventLearner] = (),
) -> Outcome:
    """Apply ``records`` (one user's, in arrival order) to ``profile`` in place.

    Skips records at or below the source offset fence, event ids seen recently,
    and events older than the lateness bound; those are counted in the outcome.
    The caller bumps ``version`` and persists when ``outcome.changed``.
    """
    outcome = Outcome()
    recent = set(profile.recent_ids)
    for record in records:
        event = record.event
        key = record.source.key
        origin = event.get("via", event["user_id"])  # via: forwarded by the handover
        if profile.merged and origin in profile.merged:
            # A merged anonymous id's event, forwarded here: its offsets are fenced apart from
            # the user's own (their order on the input partition is not the user's order).
            key = f"{key}~{origin}"
        fence = profile.fences.get(key, -1)
        if record.offset <= fence:
            outcome.fenced += 1
            outcome.counted.append(record)
            continue
        profile.fences[key] = record.offset
        if event["event_id"] in recent:
            outcome.duplicates += 1
            continue
        ts = int(event["ts"])
        if profile.last_ts is not None and ts < profile.last_ts - config.lateness_ms:
            outcome.late.append(record)
            continue
        _remember(profile, recent, event["event_id"], config.recent_ids)
        outcome.counted.append(record)
        weight, tags = _learn(profile, event, ts, config, tagger, outcome)
        for learn in learners:  # features that learn from each event (vectors)
            learn(profile, event, ts, weight, tags)
        # Per event, not per batch: the result must not depend on batch boundaries.
        _prune_tags(profile, config.top_tags)
        outcome.unmatched_refunds += corrections.expire(profile, config.lateness_ms)
        outcome.applied += 1
    return outcome


def _remember(profile: Profile, recent: set[str], event_id: str, keep: int) -> None:
    profile.recent_ids.append(event_id)
    recent.add(event_id)
    if len(profile.recent_ids) > keep:
        dropped = profile.recent_ids[: len(profile.recent_ids) - keep]
        del profile.recent_ids[: len(dropped)]
        recent.difference_update(dropped)


def _learn(
    profile: Profile,
    event: dict[str, Any],
    ts: int,
    config: ProfileConfig,
    tagger: EventTagger,
    outcome: Outcome,
) -> tuple[float, Sequence[Tag]]:
    """Update stats and tags; return the event's interest weight and tags."""
    kind = event["type"]
    profile.counts[kind] = profile.counts.get(kind, 0) + 1
    profile.first_ts = ts if profile.first_ts is None else min(profile.first_ts, ts)
    profile.last_ts = ts if profile.last_ts is None else max(profile.last_ts, ts)
    if kind == "refund":  # undoes evidence; adds none (README "Corrections")
        outcome.unmatched_refunds += corrections.refund(profile, event, config.half_life_ms)
        return 0.0, ()
    if kind == "remove_from_cart":
        cart = config.kind_weights.get("add_to_cart", 1.0)
        added = tagger({**event, "type": "add_to_cart"})
        corrections.remove_from_cart(profile, ts, cart, added, config.half_life_ms)
        return 0.0, ()
    cents = _learn_purchase(profile, event, ts, config.purchased_items) if kind == "purchase" else 0
    weight = config.kind_weights.get(kind, 1.0)
    if kind == "review":
        weight *= event["rating"] / 5.0
    tags = tagger(event)
    _add_tags(profile, tags, weight, ts, config.half_life_ms)
    if kind == "purchase":  # after its tags, so a waiting refund can take them back
        corrections.record_purchase(profile, event, cents, weight, tags, config.half_life_ms)
    return weight, tags


def _learn_purchase(profile: Profile, event: dict[str, Any], ts: int, keep: int) -> int:
    """Count the order; return its cents (what a refund can take back)."""
    profile.orders += 1
    bought = sum(int(item["quantity"]) for item in event["items"])
    profile.items_bought = min(MAX_SUM, profile.items_bought + bought)
    currency = event["currency"]
    # Integer cents keep money exact whatever order events arrive in (saturating: MAX_SUM).
    cents = min(MAX_SUM, round(float(event["amount"]) * 100))
    profile.spend_cents[currency] = min(MAX_SUM, profile.spend_cents.get(currency, 0) + cents)
    if profile.first_purchase_ts is None or ts < profile.first_purchase_ts:
        profile.first_purchase_ts = ts
    if profile.last_purchase_ts is None or ts > profile.last_purchase_ts:
        profile.last_purchase_ts = ts
    for item in event["items"]:
        pid = item["product_id"]
        if pid in profile.purchased:
            profile.purchased.remove(pid)
        profile.purchased.append(pid)
    del profile.purchased[: max(0, len(profile.purchased) - keep)]
    return cents


def _add_tags(
    profile: Profile, tags: Sequence[Tag], weight: float, ts: int, half_life: int
) -> None:
    """Add ``weight``-scaled tags decayed by event time.

    Scores are stored anchored at ``profile.tag_anchor`` (:mod:`profiles.core.decay`): adding an
    event never touches other tags, and the result does not depend on arrival order, so late
    events are exact.
    """
    if not tags or weight <= 0:
        return
    profile.tag_anchor, shrink = rebase(profile.tag_anchor, ts, half_life)
    if shrink != 1.0:
        profile.tags = {tag: score * shrink for tag, score in profile.tags.items()}
    growth = 2.0 ** ((ts - profile.tag_anchor) / half_life)
    for tag, share in tags:
        profile.tags[tag] = profile.tags.get(tag, 0.0) + weight * share * growth


def _prune_tags(profile: Profile, keep: int) -> None:
    # Prune in bulk, only past 2x the limit, so pruning is rare and cheap.
    # (A tag pruned early vs. kept can differ only if events arrive out of order.)
    if len(profile.tags) <= 2 * keep:
        return
    ranked = sorted(profile.tags.items(), key=lambda kv: (-kv[1], kv[0]))[:keep]
    profile.tags = dict(ranked)


def decayed(score: float, anchor: int, as_of: int, half_life_ms: int) -> float:
    """A stored anchored score as seen at ``as_of``; finite for any span."""
    exponent = -(as_of - anchor) / half_life_ms
    return score * math.pow(2.0, max(exponent, -1074.0))
