"""Item popularity shared by all workers: decayed counts, fenced by input offset.

Every worker counts the interactions of the users it owns into one Redis hash per owner
partition (``rtp:pop:{<partition>}``); every worker reads all of them into its index. A count
is stored anchored (``w * 2**((ts - anchor) / h)``, like the profile's tag scores), so adding
is one ``HINCRBYFLOAT``, order does not matter and late events are exact.

Redelivery must not count twice: the hash keeps, per input partition, the highest offset
already counted (``@f:<source>``), and a contribution at or below it is skipped. The events of
one input partition reach an owner partition in offset order (the same order the per-user
fences rely on), so one number per source suffices. :class:`FencedCounts` is that logic in
Python: the in-memory store uses it, and the Lua script in
:mod:`profiles.redis.catalog` does the same.

Each interaction is counted twice: for everyone (field ``p:<product>``) and for the user's
segment when it has one (``s<segment>:<product>``), so a cold-start user gets what people like
them buy before what everybody buys.

>>> c = FencedCounts(half_life_ms=1000)
>>> c.add([("in:0", 5, 0, "p:tea", 1.0), ("in:0", 6, 1000, "p:tea", 1.0)])
2
>>> c.add([("in:0", 6, 1000, "p:tea", 1.0)])  # redelivered: fenced
0
>>> round(c.decayed("p:tea", as_of=1000), 3)  # 1 halved once + 1
1.5

A half-life of :data:`NO_DECAY` (0) makes them plain fenced sums (counters that must not
decay, such as the experiments' per-arm counts): weights are added as they are, the anchor is
the first event time and never moves, so integer weights sum exactly.

>>> n = FencedCounts(half_life_ms=NO_DECAY)
>>> n.add([("in:0", 5, 0, "x", 1.0), ("in:0", 6, 10**12, "x", 1.0)])
2
>>> n.add([("in:0", 6, 10**12, "x", 1.0)])  # redelivered: fenced
0
>>> n.decayed("x", as_of=10**13), n.state.anchor
(2.0, 0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from profiles.core.decay import rebase
from schemas.kinds import product_lines

__all__ = [
    "NO_DECAY",
    "Contribution",
    "FencedCounts",
    "PartitionCounts",
    "count_field",
    "interactions",
    "merge_partitions",
    "split_fields",
]

#: The half-life of counts that do not decay: plain fenced sums, never rebased.
NO_DECAY = 0

#: (source "<topic>:<partition>", offset, event ts ms, counted field (:func:`count_field`), weight)
Contribution = tuple[str, int, int, str, float]


def interactions(
    event: Mapping[str, Any], kind_weights: Mapping[str, float]
) -> list[tuple[str, float]]:
    """``(product, weight)`` pairs an event adds to popularity: the profile's kind weights.

    >>> w = {"purchase": 5.0, "click": 1.0, "review": 2.0}
    >>> interactions({"type": "purchase", "items": [{"product_id": "a"}, {"product_id": "b"}]}, w)
    [('a', 5.0), ('b', 5.0)]
    >>> interactions({"type": "review", "product_id": "a", "rating": 4}, w)
    [('a', 1.6)]
    >>> interactions({"type": "search", "query": "tea"}, w)
    []
    """
    kind = event["type"]
    weight = float(kind_weights.get(kind, 0.0))
    if weight <= 0:
        return []
    if kind == "review":
        weight = weight * event["rating"] / 5.0
    return [(line["product_id"], weight) for line in product_lines(event)]


def count_field(product_id: str, segment: int | None = None) -> str:
    """The hash field counting ``product_id`` for everyone, or for one segment's users.

    >>> count_field("tea"), count_field("tea", 3)
    ('p:tea', 's3:tea')
    """
    return f"p:{product_id}" if segment is None else f"s{segment}:{product_id}"


def split_fields(
    counts: Mapping[str, float],
) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """Counts by field as (everyone's by product, each segment's by product).

    >>> split_fields({"p:tea": 2.0, "s3:tea": 1.0, "s3:p:x": 0.5, "junk": 9.0})
    ({'tea': 2.0}, {3: {'tea': 1.0, 'p:x': 0.5}})
    """
    everyone: dict[str, float] = {}
    segments: dict[int, dict[str, float]] = {}
    for name, value in counts.items():
        if name.startswith("p:"):
            everyone[name[2:]] = value
            continue
        head, colon, pid = name.partition(":")
        if colon and head[:1] == "s" and head[1:].isdigit():
            segments.setdefault(int(head[1:]), {})[pid] = value
    return everyone, segments


@dataclass
class PartitionCounts:
    """One partition's stored counts by field: anchored values, their anchor and the latest
    event time."""

    anchor: int | None = None
    latest: int | None = None
    counts: dict[str, float] = field(default_factory=dict)


@dataclass
class FencedCounts:
    """Anchored decayed counts with per-source offset fences (one owner partition); plain
    fenced sums with ``half_life_ms`` :data:`NO_DECAY`."""

    half_life_ms: int
    state: PartitionCounts = field(default_factory=PartitionCounts)
    fences: dict[str, int] = field(default_factory=dict)

    def add(self, entries: Sequence[Contribution]) -> int:
        """Count the entries above their source's fence; returns how many were counted.

        Entries of one event share its offset, so the fence is compared with its value
        *before* this call and raised once at the end.
        """
        before = dict(self.fences)
        counted = 0
        s, h = self.state, self.half_life_ms
        for source, offset, ts, name, weight in entries:
            if offset <= before.get(source, -1):
                continue
            if h == NO_DECAY:
                s.anchor = ts if s.anchor is None else s.anchor  # kept for the stored layout
                growth = 1.0
            else:
                s.anchor, shrink = rebase(s.anchor, ts, h)
                if shrink != 1.0:
                    s.counts = {p: v * shrink for p, v in s.counts.items()}
                growth = math.pow(2.0, max((ts - s.anchor) / h, -1074.0))
            s.latest = ts if s.latest is None else max(s.latest, ts)
            s.counts[name] = s.counts.get(name, 0.0) + weight * growth
            self.fences[source] = max(self.fences.get(source, -1), offset)
            counted += 1
        return counted

    def decayed(self, name: str, as_of: int) -> float:
        """Field ``name``'s count as of event time ``as_of``."""
        s = self.state
        if s.anchor is None:
            return 0.0
        if self.half_life_ms == NO_DECAY:
            return s.counts.get(name, 0.0)
        return s.counts.get(name, 0.0) * math.pow(
            2.0, max(-(as_of - s.anchor) / self.half_life_ms, -1074.0)
        )


def merge_partitions(
    parts: Iterable[PartitionCounts], half_life_ms: int
) -> tuple[dict[str, float], int | None, int | None]:
    """All partitions' counts on one anchor (the latest of theirs): (counts, anchor, latest);
    with :data:`NO_DECAY`, their plain sums.

    >>> a = PartitionCounts(anchor=0, latest=0, counts={"p:x": 1.0})
    >>> b = PartitionCounts(anchor=1000, latest=1000, counts={"p:x": 1.0, "p:y": 2.0})
    >>> merge_partitions([a, b], half_life_ms=1000)
    ({'p:x': 1.5, 'p:y': 2.0}, 1000, 1000)
    >>> merge_partitions([a, b], half_life_ms=NO_DECAY)
    ({'p:x': 2.0, 'p:y': 2.0}, 1000, 1000)
    """
    parts = [p for p in parts if p.anchor is not None]
    if not parts:
        return {}, None, None
    anchor = max(int(p.anchor) for p in parts if p.anchor is not None)
    latest = max(int(p.latest if p.latest is not None else p.anchor or 0) for p in parts)
    out: dict[str, float] = {}
    for p in parts:
        assert p.anchor is not None
        if half_life_ms == NO_DECAY:
            scale = 1.0
        else:
            scale = math.pow(2.0, max((p.anchor - anchor) / half_life_ms, -1074.0))
        for name, value in p.counts.items():
            out[name] = out.get(name, 0.0) + value * scale
    return out, anchor, latest
