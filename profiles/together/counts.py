"""Decayed pair counts with per-source offset fences, and the lift that ranks them.

Two kinds of stored counter, both anchored (``w * 2**((ts - anchor) / h)``, like popularity)
and fenced by input offset per source (``@f:<source>``), so a redelivered event is not
counted again:

* per item ``x``: its neighbours, one sorted set per kind (``b`` bought, ``v`` viewed):
  member ``y``, score the anchored number of sessions with both. After each update a set
  longer than ``cap`` keeps its ``cap`` largest counts (ties: the larger id), the way
  ``ZREMRANGEBYRANK`` trims it: a neighbour that fell out and comes back starts again from 0,
  so the lists hold the frequent pairs (a space-saving top-N), not every pair ever seen.
* per owner partition: the marginals, field ``b:<x>`` (sessions that bought ``x``), and ``b``
  (sessions with a purchase); ``v`` likewise.

:class:`FencedPairs` is the logic in Python: the in-memory store uses it, and the Lua script in
:mod:`profiles.redis.together` does the same.

>>> c = FencedPairs(half_life_ms=1000, cap=1)
>>> c.add([("in:0", 5, 0, "b:tea", 1.0), ("in:0", 5, 0, "b:cup", 2.0)])
2
>>> c.add([("in:0", 5, 0, "b:tea", 1.0)])  # redelivered: fenced
0
>>> c.neighbours["b"]  # capped at one neighbour: the stronger kept
{'cup': 2.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from profiles.core.decay import rebase
from profiles.together.session import KINDS

__all__ = ["FencedPairs", "Pair", "PairCounts", "decay_to", "score_pairs"]

#: (source "<topic>:<partition>", offset, event ts ms, field, weight), as popularity's.
PairContribution = tuple[str, int, int, str, float]


def _growth(ts: int, anchor: int, h: int) -> float:
    return math.pow(2.0, max((ts - anchor) / h, -1074.0))


@dataclass
class FencedPairs:
    """One stored counter: plain fields, and with ``cap > 0`` a neighbour set per kind."""

    half_life_ms: int
    cap: int = 0
    anchor: int | None = None
    latest: int | None = None
    fences: dict[str, int] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    neighbours: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, entries: Sequence[PairContribution]) -> int:
        """Count entries above their source's fence (compared with its value before the call,
        raised once at the end); then trim each neighbour set to ``cap``."""
        before = dict(self.fences)
        counted = 0
        h = self.half_life_ms
        for source, offset, ts, name, weight in entries:
            if offset <= before.get(source, -1):
                continue
            self.anchor, shrink = rebase(self.anchor, ts, h)
            if shrink != 1.0:
                self.counts = {k: v * shrink for k, v in self.counts.items()}
                for kind, members in self.neighbours.items():
                    self.neighbours[kind] = {m: v * shrink for m, v in members.items()}
            self.latest = ts if self.latest is None else max(self.latest, ts)
            add = weight * _growth(ts, self.anchor, h)
            kind, colon, member = name.partition(":")
            if self.cap > 0 and colon and kind in KINDS:
                members = self.neighbours.setdefault(kind, {})
                members[member] = members.get(member, 0.0) + add
            else:
                self.counts[name] = self.counts.get(name, 0.0) + add
            self.fences[source] = max(self.fences.get(source, -1), offset)
            counted += 1
        for kind, members in self.neighbours.items():
            if len(members) > self.cap:
                ranked = sorted(members.items(), key=lambda kv: (kv[1], kv[0]))
                self.neighbours[kind] = dict(ranked[len(ranked) - self.cap :])
        return counted


def decay_to(value: float, anchor: int | None, as_of: int, half_life_ms: int) -> float:
    """An anchored value as of event time ``as_of``.

    >>> decay_to(4.0, 0, 2000, 1000)
    1.0
    """
    return 0.0 if anchor is None else value * _growth(anchor, as_of, half_life_ms)


@dataclass
class PairCounts:
    """Decayed counts as of one time, as :func:`score_pairs` reads them."""

    transactions: float  # sessions with this kind
    marginals: Mapping[str, float]  # item -> sessions with it


@dataclass(frozen=True)
class Pair:
    item: str
    other: str
    count: float  # sessions with both (decayed)
    support: float  # count / transactions
    confidence: float  # count / sessions with ``item``
    lift: float  # confidence / P(other)


def score_pairs(
    item: str,
    neighbours: Mapping[str, float],
    counts: PairCounts,
    min_count: float,
    k: int,
) -> list[Pair]:
    """``item``'s neighbours with at least ``min_count`` sessions together, best lift first.

    Lift ``P(a, b) / (P(a) P(b))`` corrects for popularity: a best seller bought with
    everything has lift about 1, a complement bought mostly with ``item`` far more.

    >>> pc = PairCounts(100.0, {"phone": 10.0, "case": 8.0, "bag": 50.0})
    >>> [(p.other, round(p.lift, 2)) for p in score_pairs("phone", {"case": 6.0, "bag": 5.0},
    ...                                                   pc, 2.0, 5)]
    [('case', 7.5), ('bag', 1.0)]
    """
    n = counts.transactions
    own = counts.marginals.get(item, 0.0)
    if n <= 0 or own <= 0:
        return []
    out = []
    for other, count in neighbours.items():
        theirs = counts.marginals.get(other, 0.0)
        if count < min_count or theirs <= 0 or other == item:
            continue
        confidence = min(count / own, 1.0)
        lift = confidence / min(theirs / n, 1.0)
        out.append(Pair(item, other, count, count / n, confidence, lift))
    out.sort(key=lambda p: (-p.lift, -p.count, p.other))
    return out[:k]
