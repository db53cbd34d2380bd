"""Complements of a user's last purchase, for the recommendation blend.

:func:`complements` is pure: the items bought together with the given ones, by lift, each with
a strength in [0, 1] (1 = the best lift among them). :class:`ComplementCache` keeps, per worker,
the neighbours of recently bought items and the marginals in memory: the feature refreshes
the items a batch bought before its users are recommended (one pipeline for the items not
fresh in the cache), so the blend, which runs in a thread, never waits on Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from profiles.together.counts import PairCounts, score_pairs

__all__ = ["ComplementCache", "NeighbourReader", "complements", "last_bought"]

#: How many of the user's most recent purchases their complements come from.
LAST_BOUGHT = 3


def last_bought(purchased: Sequence[str], n: int = LAST_BOUGHT) -> list[str]:
    """The user's ``n`` most recent purchases, newest first (``Profile.purchased`` is oldest
    first).

    >>> last_bought(["a", "b", "c", "d"])
    ['d', 'c', 'b']
    """
    return list(reversed(purchased[-n:])) if n > 0 else []


def complements(
    bought: Sequence[str],
    neighbours: Mapping[str, Mapping[str, float]],
    counts: PairCounts,
    min_count: float,
    k: int,
) -> list[tuple[str, float]]:
    """Up to ``k`` items paired with ``bought`` (decayed co-counts in ``neighbours``), best
    lift first; an item paired with several keeps its best lift.

    >>> pc = PairCounts(100.0, {"phone": 10.0, "case": 8.0, "bag": 50.0})
    >>> complements(["phone"], {"phone": {"case": 6.0, "bag": 5.0}}, pc, 2.0, 5)
    [('case', 1.0), ('bag', 0.1333)]
    """
    best: dict[str, float] = {}
    for item in bought:
        for pair in score_pairs(item, neighbours.get(item, {}), counts, min_count, k):
            if pair.other not in bought:
                best[pair.other] = max(best.get(pair.other, 0.0), pair.lift)
    if not best:
        return []
    top = max(best.values())
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [(pid, round(lift / top, 4)) for pid, lift in ranked]


class NeighbourReader(Protocol):
    """Where the counts are read from (``profiles.redis.together.RedisTogether``)."""

    async def bought(self, items: Sequence[str], limit: int) -> dict[str, dict[str, float]]:
        """Decayed bought-together counts of ``items`` (their ``limit`` strongest)."""
        ...

    async def bought_marginals(self) -> PairCounts: ...


class ComplementCache:
    """Neighbours of bought items and the marginals, kept ``ttl_s`` seconds (wall clock: a read
    model's freshness, not an event-time decision)."""

    def __init__(
        self,
        reader: NeighbourReader,
        min_count: float,
        k: int = 20,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.min_count = min_count
        self.k = k
        self.ttl_s = ttl_s
        self.clock = clock
        self._items: dict[str, tuple[float, dict[str, float]]] = {}
        self._counts: tuple[float, PairCounts] | None = None

    async def refresh(self, items: Sequence[str]) -> int:
        """Read the ``items`` not fresh in the cache (and stale marginals); returns how many."""
        now = self.clock()
        if self._counts is None or now - self._counts[0] >= self.ttl_s:
            self._counts = (now, await self.reader.bought_marginals())
        stale = [
            p
            for p in dict.fromkeys(items)
            if now - self._items.get(p, (-1e18, {}))[0] >= self.ttl_s
        ]
        if stale:
            found = await self.reader.bought(stale, self.k)
            for pid in stale:
                self._items[pid] = (now, found.get(pid, {}))
        if len(self._items) > 100_000:  # keep it bounded: drop the oldest reads
            for pid, _ in sorted(self._items.items(), key=lambda kv: kv[1][0])[:50_000]:
                del self._items[pid]
        return len(stale)

    def of(self, purchased: Sequence[str]) -> list[tuple[str, float]]:
        """Complements of the user's last purchases, from what the cache holds."""
        if self._counts is None:
            return []
        bought = last_bought(purchased)
        neighbours = {p: self._items[p][1] for p in bought if p in self._items}
        return complements(bought, neighbours, self._counts[1], self.min_count, self.k)
