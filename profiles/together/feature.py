"""Frequently bought together as a profile feature: field ``tg`` (the user's current session)
and, per batch, the fenced pair counts of what its users' sessions added.

No event is emitted and nothing is indexed: the counts are about items, not users (no key or
value of them names a user), and the session state lives in the profile hash, which an erasure
deletes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

from profiles.core.ownership import owner
from profiles.core.profile import EventLearner, Profile, Tag
from profiles.pipeline.feature import (
    Batch,
    Feature,
    Fields,
    FieldValue,
    PairsAdd,
    Stats,
    UserResult,
)
from profiles.together.complements import ComplementCache
from profiles.together.counts import PairContribution
from profiles.together.session import SessionConfig, contributions, learn
from schemas.kinds import product_lines

_NEW = "together_new"  # per attempt: event id -> what learning it added


class TogetherFields(Fields):
    names = ("tg",)

    def decode(self, profile: Profile, values: Sequence[bytes | None]) -> None:
        profile.parts["together"] = None if values[0] is None else orjson.loads(values[0])

    def encode(self, profile: Profile) -> dict[str, FieldValue]:
        state = profile.parts.get("together")
        return {} if state is None else {"tg": orjson.dumps(state)}


class TogetherFeature(Feature):
    name = "together"
    fields = TogetherFields()

    def __init__(
        self,
        session: SessionConfig,
        partitions: int,
        half_life_ms: int,
        neighbours: int,
        cache: ComplementCache | None = None,
    ) -> None:
        self.cache = cache
        self.session = session
        self.partitions = partitions
        self.half_life_ms = half_life_ms
        self.neighbours = neighbours

    async def prepare(self, batch: Batch, stats: Stats) -> None:
        """Read the neighbours of what the batch bought, for the blend's complements."""
        if self.cache is None:
            return
        bought = [
            line["product_id"]
            for r in batch.records
            if r.event["type"] == "purchase"
            for line in product_lines(r.event)
        ]
        if bought:
            read = await self.cache.refresh(bought)
            stats.counts["complement_reads"] = stats.counts.get("complement_reads", 0) + read

    def attach(self, profile: Profile, stats: Stats) -> None:
        profile.parts.pop(_NEW, None)

    def learner(self, batch: Batch) -> EventLearner | None:
        cfg = self.session

        def session_step(
            profile: Profile, event: dict[str, Any], ts: int, weight: float, tags: Sequence[Tag]
        ) -> None:
            state = learn(profile.parts.get("together"), event, ts, cfg)
            profile.parts["together"] = state
            added = contributions(state, event["event_id"])
            profile.parts.setdefault(_NEW, {})[event["event_id"]] = added

        return session_step

    async def compute(self, batch: Batch, users: Sequence[UserResult], stats: Stats) -> None:
        if batch.attempt != 1:  # batch-level counts: taken once, the store's fences decide
            return
        items: dict[str, list[PairContribution]] = defaultdict(list)
        margins: dict[int, list[PairContribution]] = defaultdict(list)
        for user in users:
            state = user.profile.parts.get("together")
            new = user.profile.parts.get(_NEW, {})
            mine = owner(user.user_id, self.partitions)
            part = margins[mine]
            for r in user.outcome.counted:
                eid = r.event["event_id"]
                # Applied before (a redelivery): the same contributions, from the stored session.
                added = new[eid] if eid in new else contributions(state, eid)
                # An item's counts come from every owner partition, each in its own order: one
                # fence per (input partition, owner partition), like popularity's per hash.
                ts, key = int(r.event["ts"]), f"{r.source.key}@{mine}"
                for pid, name, weight in added:
                    if ":" in name:
                        items[pid].append((key, r.offset, ts, name, weight))
                    else:
                        field = f"{name}:{pid}" if pid else name
                        part.append((key, r.offset, ts, field, weight))
        h, cap = self.half_life_ms, self.neighbours
        batch.pairs += [PairsAdd(None, p, e, h) for p, e in sorted(margins.items()) if e]
        batch.pairs += [PairsAdd(pid, -1, e, h, cap) for pid, e in sorted(items.items())]
        stats.counts["pair_updates"] = stats.counts.get("pair_updates", 0) + sum(
            len(e) for e in items.values()
        )
