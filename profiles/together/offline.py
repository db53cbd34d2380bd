"""The pair counts of a whole log in memory, with the worker's own pure code: for evaluations
and benchmarks (``stream/evaluation/together.py``), not the worker.

>>> pairs = OfflinePairs(SessionConfig(), half_life_ms=10**12)
>>> order = {"type": "purchase", "user_id": "u", "session_id": "s", "ts": 0,
...          "items": [{"product_id": "phone"}, {"product_id": "case"}]}
>>> for i, uid in enumerate(["u1", "u2"]):
...     pairs.add({**order, "user_id": uid, "event_id": f"e{i}"}, i)
>>> pairs.neighbours("phone", "b", as_of=0)
{'case': 2.0}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from profiles.together.complements import complements, last_bought
from profiles.together.counts import FencedPairs, PairContribution, PairCounts, decay_to
from profiles.together.rules import Rule, rules
from profiles.together.session import SessionConfig, contributions, kind_of, learn

__all__ = ["OfflinePairs"]


class OfflinePairs:
    """Sessions of every user and the fenced counts, fed one event at a time in log order."""

    def __init__(self, session: SessionConfig, half_life_ms: int, neighbours: int = 50) -> None:
        self.session = session
        self.half_life_ms = half_life_ms
        self.cap = neighbours
        self.sessions: dict[str, dict[str, Any] | None] = {}
        self.items: dict[str, FencedPairs] = {}
        self.margins = FencedPairs(half_life_ms)

    def add(self, event: Mapping[str, Any], offset: int) -> None:
        if kind_of(event) is None:
            return
        user, ts = str(event["user_id"]), int(event["ts"])
        state = learn(self.sessions.get(user), event, ts, self.session)
        self.sessions[user] = state
        by_item: dict[str, list[PairContribution]] = defaultdict(list)
        margins: list[PairContribution] = []
        for pid, name, weight in contributions(state, str(event["event_id"])):
            if ":" in name:
                by_item[pid].append(("log", offset, ts, name, weight))
            else:
                field = f"{name}:{pid}" if pid else name
                margins.append(("log", offset, ts, field, weight))
        for pid, entries in by_item.items():
            self.items.setdefault(pid, FencedPairs(self.half_life_ms, self.cap)).add(entries)
        if margins:
            self.margins.add(margins)

    def counts(self, kind: str, as_of: int) -> PairCounts:
        m = self.margins
        prefix = f"{kind}:"
        total = decay_to(m.counts.get(kind, 0.0), m.anchor, as_of, self.half_life_ms)
        marginals = {
            name[len(prefix) :]: decay_to(v, m.anchor, as_of, self.half_life_ms)
            for name, v in m.counts.items()
            if name.startswith(prefix)
        }
        return PairCounts(total, marginals)

    def neighbours(self, item: str, kind: str, as_of: int) -> dict[str, float]:
        found = self.items.get(item)
        if found is None:
            return {}
        members = found.neighbours.get(kind, {})
        return {o: decay_to(v, found.anchor, as_of, self.half_life_ms) for o, v in members.items()}

    def complements(
        self, purchased: Sequence[str], as_of: int, min_count: float, k: int
    ) -> list[tuple[str, float]]:
        """What the worker's blend gets after these purchases (``Profile.purchased``)."""
        bought = last_bought(purchased)
        found = {p: self.neighbours(p, "b", as_of) for p in bought}
        return complements(bought, found, self.counts("b", as_of), min_count, k)

    def rules(self, kind: str, as_of: int, min_count: float, k: int) -> list[Rule]:
        found = {p: self.neighbours(p, kind, as_of) for p in self.items}
        return rules(found, self.counts(kind, as_of), min_count, k)
